"""The server: listening socket, accept loop, connection limits, deadline sweeper, graceful shutdown.

Usable as a library (``Server(root, ...)``, ``await server.start()``, ``await server.serve_forever()``) and by
``zcopy serve``. The accept loop is a plain add_reader on a non-blocking listening socket, on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import ssl as ssl_module
import sys
import time
from typing import Any

from zcopy import observe as _observe  # not `from zcopy.observe import`: that rebinds zcopy.observe to the module
from zcopy.aio import MAX_CHUNK
from zcopy.serve.accesslog import AccessLog
from zcopy.serve.cache import FileCache
from zcopy.serve.conn import Handshake, RawConnection, Session
from zcopy.serve.errnos import ACCEPT_RETRY, EXHAUSTED
from zcopy.serve.handler import Handler
from zcopy.serve.resolve import Resolver

# Accept at most this many connections per readable event, so a connection storm cannot monopolise the loop.
ACCEPT_BATCH = 64
# Defaults, chosen against nginx's: client_header_timeout 60s and keepalive_timeout 75s are generous for a
# file server on the open internet; 10 s to send a head and 30 s idle are what slowloris defenses recommend.
HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 30.0
SEND_TIMEOUT = 60.0  # nginx send_timeout: max gap between two successful writes to a stalled reader
MAX_CONNECTIONS = 10_000
MAX_HEADER_BYTES = 16 << 10  # 16 KiB: more than any browser sends; nginx large_client_header_buffers 4×8k
MAX_URL_BYTES = 8 << 10  # 8 KiB request-target, RFC 9112 §3 recommends supporting at least 8000 octets
BACKLOG = 1024
# After an accept that failed for lack of descriptors, wait this long before the next try: long enough not to
# spin on a listening socket that stays readable, short against any client's connect timeout.
ACCEPT_RETRY_DELAY = 0.1
# A condition that can repeat for every request (out of descriptors) is logged at most once per this interval,
# and the repeats in between counted into the next line: a line per request would add disk writes to an overload.
LOG_INTERVAL = 1.0


class Server:
    """An HTTP/1.1 static file server for ``root``; see docs/serve.md for every option."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
        list_dirs: bool = False,
        dotfiles: bool = False,
        follow_symlinks: bool = True,
        precompressed: bool = True,
        cache_entries: int = 256,
        cache_valid: float = 1.0,
        header_timeout: float = HEADER_TIMEOUT,
        handshake_timeout: float | None = None,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        send_timeout: float = SEND_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_url_bytes: int = MAX_URL_BYTES,
        max_chunk: int = MAX_CHUNK,
        access_log: AccessLog | None = None,
        ssl: ssl_module.SSLContext | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        if not os.path.isdir(root):
            raise NotADirectoryError(f"not a directory: {root}")
        self.resolver = Resolver(root, dotfiles=dotfiles, follow_symlinks=follow_symlinks)
        self.cache = FileCache(max_entries=cache_entries, valid=cache_valid)
        self.handler = Handler(self.resolver, self.cache, list_dirs=list_dirs, precompressed=precompressed)
        self.host, self.port = host, port
        self._sock = sock
        self.reuse_port = reuse_port
        self.header_timeout = header_timeout
        # The TLS handshake is part of "sending the head" for a slowloris: by default it gets the same budget.
        self.handshake_timeout = header_timeout if handshake_timeout is None else handshake_timeout
        self.keepalive_timeout = keepalive_timeout
        self.send_timeout = send_timeout
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.max_url_bytes = max_url_bytes
        self.max_chunk = max_chunk
        self.access_log = access_log
        self.ssl = ssl
        self.backlog = backlog
        # Every accepted socket, counted against max_connections from accept on (TLS ones while handshaking too).
        self.connections: set[Session | Handshake] = set()
        self._logged: set[str] = set()
        self._throttled: dict[str, tuple[float, int]] = {}  # cause → (time of the last line, repeats since)
        self.closing = False
        self.route = "readwrite" if ssl is not None else "sendfile"
        self._accepting = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "server not started"
        return self._loop

    @property
    def address(self) -> tuple[str, int]:
        assert self._sock is not None, "server not started"
        addr: Any = self._sock.getsockname()
        return str(addr[0]), int(addr[1])

    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((self.host, self.port))
        s.listen(self.backlog)
        return s

    async def start(self) -> None:
        """Bind (unless a socket was given) and start accepting; returns once the server is listening."""
        self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        raise_fd_limit()
        if self._sock is None:
            self._sock = self._listen()
        self._sock.setblocking(False)
        self._resume_accepting()
        self._schedule_sweep()

    # -- accepting --------------------------------------------------------------------------------------
    def _resume_accepting(self) -> None:
        if not self._accepting and not self.closing and self._sock is not None:
            self._accepting = True
            self.loop.add_reader(self._sock.fileno(), self._on_accept)

    def _pause_accepting(self) -> None:
        if self._accepting and self._sock is not None:
            self._accepting = False
            self.loop.remove_reader(self._sock.fileno())

    def _on_accept(self) -> None:
        assert self._sock is not None
        for _ in range(ACCEPT_BATCH):
            if len(self.connections) >= self.max_connections:
                # Leave the rest in the kernel's backlog: accepted later, when a connection closes.
                self._pause_accepting()
                return
            try:
                sock, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RETRY:
                    continue  # that connection is gone (reset, refused by a firewall...): the next one
                # Out of descriptors (EXHAUSTED) or worse: the connection stays in the backlog. Retry shortly
                # instead of spinning on a listening socket that stays readable.
                cause = "accept: exhausted" if exc.errno in EXHAUSTED else "accept"
                self.log_throttled(
                    cause, f"accept failed ({exc.errno}: {exc.strerror}); retrying in {ACCEPT_RETRY_DELAY:g} s"
                )
                self._pause_accepting()
                self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting)
                return
            try:
                sock.setblocking(False)
                # Nagle would hold the last segment of each response for the peer's delayed ACK (40 ms);
                # MSG_MORE already batches head and body, so NODELAY costs nothing here.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # reset between accept and here
                sock.close()
                continue
            if self.ssl is None:
                self.connections.add(RawConnection(self, sock, str(addr[0])))
            else:
                self.connections.add(Handshake(self, sock, str(addr[0]), self.ssl))

    def adopt(self, conn: Session) -> None:
        """A TLS connection whose handshake is done joins our bookkeeping (deadlines, shutdown).

        Its slot was counted at accept (by its Handshake, which is forgotten right after), so no limit check.
        """
        if self.closing:
            conn.close()
            return
        self.connections.add(conn)

    def forget(self, conn: Session | Handshake) -> None:
        self.connections.discard(conn)
        if len(self.connections) < self.max_connections:
            self._resume_accepting()
        if self.closing and not self.connections and self._closed is not None:
            self._closed.set()

    # -- deadlines ------------------------------------------------------------------------------------
    def _schedule_sweep(self) -> None:
        # One timer for all connections, ticking at a quarter of the shortest timeout (≤ 1 s): cheaper than a
        # timer per request, and a deadline is overrun by at most 25 %.
        shortest = min(self.header_timeout, self.handshake_timeout, self.keepalive_timeout, self.send_timeout)
        tick = min(1.0, max(0.05, shortest / 4))
        self._sweeper = self.loop.call_later(tick, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.connections if c.deadline < now]:
            conn.on_deadline()
        self._schedule_sweep()

    # -- life cycle -----------------------------------------------------------------------------------
    async def serve_forever(self) -> None:
        """Serve until close() (or cancellation); start() first if needed."""
        if self._loop is None:
            await self.start()
        assert self._closed is not None
        try:
            await self._closed.wait()
        finally:
            if not self.closing:
                await self.shutdown(0)

    def close(self) -> None:
        """Stop accepting and close idle connections; in-flight responses finish with Connection: close."""
        if self.closing:
            return
        self.closing = True
        self._pause_accepting()
        if self._sock is not None:
            self._sock.close()
        for conn in list(self.connections):
            if conn.idle:
                conn.close()
        if not self.connections and self._closed is not None:
            self._closed.set()

    async def wait_closed(self, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for in-flight responses, then cut the rest; release everything."""
        assert self._closed is not None
        try:
            await asyncio.wait_for(self._closed.wait(), grace)
        except (TimeoutError, asyncio.TimeoutError):  # two classes before Python 3.11
            for conn in list(self.connections):
                conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.cache.clear()
        self.resolver.close()
        if self.access_log is not None:
            self.access_log.close()

    async def shutdown(self, grace: float = 10.0) -> None:
        self.close()
        await self.wait_closed(grace)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown(1.0)

    # -- reporting ------------------------------------------------------------------------------------
    def log_error(self, message: str) -> None:
        say(message)

    def log_once(self, cause: str, message: str) -> None:
        """Log the first occurrence of ``cause`` only: a flood of bad clients must not become a flood of lines."""
        if cause not in self._logged:
            self._logged.add(cause)
            self.log_error(f"{message} (further '{cause}' events are not logged)")

    def log_throttled(self, cause: str, message: str) -> None:
        """Log ``message`` unless ``cause`` was logged less than LOG_INTERVAL ago; then count it for the next line."""
        now = time.monotonic()
        last, repeats = self._throttled.get(cause, (-LOG_INTERVAL, 0))
        if now - last < LOG_INTERVAL:
            self._throttled[cause] = (last, repeats + 1)
            return
        self._throttled[cause] = (now, 0)
        self.log_error(message + (f" ({repeats} more like it since the last line)" if repeats else ""))

    def log_exception(self, message: str) -> None:
        import traceback

        self.log_error(message + "\n" + traceback.format_exc())

    def record(self, op: str, route: str, nbytes: int, wall_s: float) -> None:
        _observe.record(op, route, nbytes, user_bytes=nbytes if route == "readwrite" else 0, wall_s=wall_s)


def say(message: str) -> None:
    """One line to stderr in one write(2): lines of several workers sharing a pipe never interleave
    (print() writes the text and the newline separately)."""
    sys.stderr.write(f"zcopy serve: {message}\n")
    sys.stderr.flush()


def raise_fd_limit() -> None:
    """Lift the soft RLIMIT_NOFILE to the hard limit: each connection and cached file holds one fd."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
