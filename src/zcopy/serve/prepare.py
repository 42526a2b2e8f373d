"""Everything `zcopy serve` can get wrong from its configuration, checked once before serving (and before forking).

A worker that cannot start because of a bad flag would fail the same way every time it is restarted; so the
parent loads the TLS certificate, opens the access log and binds the listening sockets itself, and a mistake
ends the command at once with its real cause (ConfigError → `zcopy serve: error: ...`, exit 2). Workers
inherit the results across fork(). (An ASGI app is imported in the parent too, by cli/serve.py, for the same
reason.)
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Protocol

from zcopy.serve.server import BACKLOG, listen_unix


class Options(Protocol):
    """What prepare() reads of the configuration (workers.Options has it; no import of workers, which imports us)."""

    @property
    def root(self) -> str | None: ...
    @property
    def tls_cert(self) -> str | None: ...
    @property
    def tls_key(self) -> str | None: ...
    @property
    def access_log(self) -> str | None: ...
    @property
    def uds(self) -> str | None: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def workers(self) -> int: ...
    @property
    def fd(self) -> int | None: ...
    @property
    def backlog(self) -> int: ...
    @property
    def ssl_context(self) -> ssl.SSLContext | None: ...


class ConfigError(Exception):
    """A configuration problem found before serving; the message names the cause (file, flag, address)."""


@dataclass
class Prepared:
    """What the parent made ready: the TLS context (or None) and the listening sockets.

    One socket per worker on TCP (SO_REUSEPORT); one shared by all on a unix socket (no SO_REUSEPORT balancing).
    """

    tls: ssl.SSLContext | None
    sockets: list[socket.socket] = field(default_factory=list)

    def socket(self, slot: int) -> socket.socket:
        return self.sockets[slot % len(self.sockets)]

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def load_tls(cert: str, key: str) -> ssl.SSLContext:
    for what, path in (("certificate", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot read TLS {what} {path}: {exc.strerror or exc}") from None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:  # not PEM, or a key that does not match the certificate
        raise ConfigError(
            f"cannot load TLS certificate {cert} with key {key} (not PEM, or not a matching pair): {exc}"
        ) from None
    return ctx


def check_access_log(path: str) -> None:
    """Open the log for append once, so that an unwritable path is a start-up error, not a dead worker."""
    if path == "-":
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError as exc:
        raise ConfigError(f"cannot open access log {path}: {exc.strerror or exc}") from None


def listen(host: str, port: int, count: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """``count`` listening sockets on host:port (SO_REUSEPORT when several, so the kernel spreads connections).

    Port 0 is resolved by the first socket; the others bind to the port it got. Held by the parent, a dead
    worker's socket keeps its queued connections for the worker that replaces it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((host, port))
            port = s.getsockname()[1]
            s.listen(backlog)
    except OSError as exc:
        for s in socks:
            s.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return socks


def prepare(opts: Options) -> Prepared:
    """Check and open what the configuration names, in the process that will fork the workers."""
    if opts.root is not None:
        if not os.path.isdir(opts.root):
            raise ConfigError(f"not a directory: {opts.root}")
        if not os.access(opts.root, os.R_OK | os.X_OK):
            raise ConfigError(f"cannot read directory: {opts.root}")
    tls = opts.ssl_context
    if tls is None and opts.tls_cert and opts.tls_key:
        tls = load_tls(opts.tls_cert, opts.tls_key)
    if opts.access_log:
        check_access_log(opts.access_log)
    if opts.fd is not None:
        return Prepared(tls, [inherited(opts.fd, opts.backlog)])
    if opts.uds is not None:
        try:
            return Prepared(tls, [listen_unix(opts.uds, opts.backlog)])
        except OSError as exc:
            raise ConfigError(f"cannot listen on {opts.uds}: {exc.strerror or exc}") from None
    return Prepared(tls, listen(opts.host, opts.port, max(1, opts.workers), opts.backlog))


def inherited(fd: int, backlog: int) -> socket.socket:
    """uvicorn's --fd: a socket bound by whoever started us (systemd socket activation, a supervisor), shared
    by all workers. It must be a stream socket; listen(2) again is harmless and covers one only bound."""
    try:
        s = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"--fd {fd}: not an open socket ({exc.strerror or exc})") from None
    if s.type != socket.SOCK_STREAM:
        s.detach()
        raise ConfigError(f"--fd {fd}: not a stream socket")
    try:
        s.listen(backlog)
    except OSError as exc:
        s.detach()
        raise ConfigError(f"--fd {fd}: cannot listen on it ({exc.strerror or exc})") from None
    return s
