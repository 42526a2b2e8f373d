"""Sender glue for `zcopy send`: walks the PATHs into a manifest, speaks the protocol over one TCP connection
(inside TLS 1.3 by default), and moves the files.

Routes, as reported in SendResult.routes:
- `sendfile` (plain mode, files above protocol.SMALL_FILE_MAX): FileChannel.transfer_to, the bytes never
  enter user space; the digest is computed afterwards from the page cache.
- `readwrite` (TLS mode, every file; and small files in both modes): pread into a buffer, hashed there while
  hot, written to the socket (TLS encrypts it in user space, so an encrypted session is never zero-copy).
  Small files are batched, many per BATCH frame and write.

A source that shrinks, grows or changes while it is sent is reported and its TRAILER (or BATCH item) says so,
so the receiver does not publish it; the rest of the session carries on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence

from zcopy import RouteUnavailable, routes
from zcopy.relay import protocol as rp
from zcopy.transfer import certs, checksum, codes, handshake, names, pairing, send_plan
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import E_IO, ModeError, ProtocolError, RemoteError, TransferError
from zcopy.transfer.results import SendResult
from zcopy.transfer.send_files import PROGRESS_CHUNK, Files, Progress
from zcopy.transfer.sources import Source, collect
from zcopy.transfer.stream import PeerError, Stream

# How long to wait for the receiver's ERROR frame after the connection broke under us.
_ERROR_GRACE_S = 2.0


def send(
    paths: Sequence[str | os.PathLike[str]],
    address: tuple[str, int] | None = None,
    *,
    relay: tuple[str, int] | None = None,
    code: str | None = None,
    on_code: Callable[[str], None] | None = None,
    token: str | bytes | None = None,
    resume: bool = False,
    checksum_name: str = "xxh3",
    progress: Progress | None = None,
    timeout: float | None = 60.0,
    route: str | None = None,
    plain: bool = False,
    links: bool = False,
    fingerprint: str | None = None,
    exclude: Sequence[str] = (),
) -> SendResult:
    """Send files and directory trees to a `Receiver` at `address`, or through a `zcopy relay` at `relay`.

    Through a relay the receiver is found by a short code: `code` (e.g. "7-guitarist-revenge", the sender's
    choice) or, by default, one made from the nameplate the relay allocates. `on_code(code)` is called with it
    as soon as the relay has placed this sender, before the receiver joins (print it there); the result's
    `code` holds it too. SPAKE2 with the code gives the session the token it would otherwise need (so `token`
    is not used with a relay), and the result's `via` says "relay" or "direct".

    Encrypted (TLS 1.3) unless `plain`; the receiver must be in the same mode. Returns a SendResult; files the
    receiver did not publish (checksum mismatch, source changed) are in `failed`. Raises TransferError
    (RemoteError when the receiver refused, AuthError, ModeError, ProtocolError, IntegrityError) when the
    session itself fails, OSError when a source cannot be read.
    `timeout` bounds each wait on the network (connect, a stalled send or receive), not the whole transfer.
    `route` forces the body route of large files in plain mode (e.g. "readwrite" to compare with a plain
    read+send; default: sendfile with visible fallbacks); an impossible one raises RouteUnavailable before any
    file is sent. `links` sends symlinks inside directories as links (the receiver needs links too).
    `fingerprint` ("SHA256:<hex>", as `zcopy recv` prints it) pins the receiver's certificate: any other is refused
    before HELLO, which authenticates the receiver even without a token. `exclude` leaves out names matching
    rsync-style glob patterns (zcopy.transfer.exclude); a bad pattern raises ValueError.
    """
    if (address is None) == (relay is None):
        raise ValueError("send() needs either a receiver's address or a relay")
    if relay is not None and token is not None:
        raise ValueError("a token is not used through a relay: the code stands in for it")
    if code is not None and relay is None:
        raise ValueError("a code needs a relay")
    if code is not None:
        codes.parse(code)  # a mistyped code is refused before anything is sent
    if fingerprint is not None and plain:
        raise ValueError("a certificate fingerprint needs TLS: it cannot be checked with --plain")
    if fingerprint is not None and not certs.is_fingerprint_text(fingerprint):
        # Checked before connecting: a mistyped pin must not read as a man in the middle.
        raise ValueError(f"{fingerprint!r} is not a certificate fingerprint: `zcopy recv` prints it as SHA256: "
                         "followed by 64 hex digits")
    if checksum_name not in checksum.ALGORITHMS:
        raise ValueError(f"unknown checksum {checksum_name!r}; choose from {', '.join(checksum.ALGORITHMS)}")
    routes.require(route, "file", "socket")
    if route not in (None, "readwrite") and not plain:
        raise RouteUnavailable(route, "an encrypted session copies every body through user space (TLS encrypts "
                                      "there): --route only chooses among zero-copy routes with --plain")
    sources, warnings = collect(paths, links, exclude)
    names.check_tree((s.entry.name, s.entry.is_dir) for s in sources)
    tok = token.encode() if isinstance(token, str) else token
    t0 = time.perf_counter()
    chosen = code
    via = "direct" if relay is None else "relay"
    if relay is not None:
        def placed(nameplate: str) -> None:
            nonlocal chosen
            if chosen is None:
                chosen = codes.make(nameplate)
            if on_code is not None:
                on_code(chosen)

        plate = codes.parse(code)[0] if code is not None else None
        sock, _ = pairing.dial(relay, rp.SIDE_SENDER, plate, timeout=timeout, on_waiting=placed)
        try:
            assert chosen is not None
            tok = pairing.pake(sock, chosen, rp.SIDE_SENDER)
            # A receiver that also listens offers its addresses: tried first, the relay kept if none answers.
            direct = pairing.try_direct(pairing.read_offer(sock, tok))
            pairing.send_choice(sock, tok, direct is not None)
        except BaseException:
            sock.close()
            raise
        if direct is not None:
            sock.close()
            sock = direct
            via = "direct"  # paired (and the code checked) through the relay, the bytes straight to the receiver
    else:
        assert address is not None
        sock = socket.create_connection(address, timeout=timeout)
    session = _Session(sock, sources, tok, resume, checksum.ALGORITHMS[checksum_name], progress, route, plain,
                       links, fingerprint)
    session.result.via = via
    session.result.code = chosen or ""
    try:
        # Small frames must not wait for delayed ACKs (Nagle); the FILE header is sent with MSG_MORE so it
        # still shares a segment with the start of the body.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session.result.warnings += warnings
        session.result.checksum = checksum_name
        session.run()
    finally:
        session.st.sock.close()
        sock.close()
    session.result.seconds = time.perf_counter() - t0
    return session.result


class _Session:
    """One session on a connected socket, phase by phase: authentication (handshake), manifest, plan, files,
    done. run() tells the receiver why in an ERROR frame when this side fails."""

    def __init__(
        self,
        sock: socket.socket,
        sources: list[Source],
        token: bytes | None,
        resume: bool,
        algo: int,
        progress: Progress | None,
        route: str | None,
        plain: bool,
        links: bool,
        pin: str | None,
    ) -> None:
        self.st = Stream(sock, "receiver", exact=False,
                         on_eof=TransferError("the receiver closed the connection unexpectedly", E_IO))
        self.sources = sources
        self.token = token
        self.algo = algo
        self.flags = (p.H_RESUME if resume else 0) | (p.H_LINKS if links else 0)
        self.progress = progress
        self.route = route
        self.plain = plain
        self.pin = pin  # the receiver certificate's expected fingerprint, if the user gave one
        self.result = SendResult(encryption="none" if plain else "tls1.3")

    def _remote_reason(self, exc: OSError) -> TransferError:
        """After the connection broke: the receiver's ERROR frame if it sent one, else the OS error."""
        try:
            self.st.sock.settimeout(_ERROR_GRACE_S)
            while True:
                ev = self.st.dec.next_event()
                if isinstance(ev, p.Error):
                    return PeerError("receiver", ev)
                if ev is p.NEED_DATA:
                    data = self.st.sock.recv(1 << 16)
                    if not data:
                        break
                    self.st.dec.feed(data)
        except (OSError, TransferError):
            pass
        return TransferError(f"connection to the receiver lost: {getattr(exc, 'strerror', None) or exc}", E_IO)

    def run(self) -> None:
        try:
            self._run()
        except (RemoteError, ModeError):
            raise
        except RouteUnavailable as exc:  # a forced route the kernel refused: a session error like any other
            with contextlib.suppress(OSError):
                self.st.sock.sendall(p.Error(E_IO, str(exc)).encode())
            raise TransferError(str(exc), E_IO) from None
        except TransferError as exc:  # e.g. a malformed frame from the receiver: tell it before leaving
            with contextlib.suppress(OSError, ValueError):
                self.st.sock.sendall(p.Error(exc.code, str(exc)).encode())
            raise
        except ssl.SSLError as exc:
            raise TransferError(f"TLS failed: {exc.reason or exc}", E_IO) from None
        except (ConnectionError, TimeoutError) as exc:
            raise self._remote_reason(exc) from exc
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                raise self._remote_reason(exc) from exc
            raise

    def _run(self) -> None:
        agreed = handshake.sender(self.st, token=self.token, algo=self.algo, flags=self.flags, plain=self.plain,
                                  pin=self.pin)
        self.result.certificate = agreed.certificate
        entries = [s.entry for s in self.sources]
        send_plan.send_manifest(self.st, agreed, entries)
        plan, overwrite = send_plan.read_plan(self.st, agreed, len(entries))
        res = self.result
        res.bytes_total = sum(e.size for e in entries)
        res.dirs = sum(e.is_dir for e in entries)
        res.links = sum(e.is_link for e in entries)
        todo, skipped_bytes = send_plan.decide(self.sources, plan, overwrite, self.algo, res)
        files = Files(self.st, self.sources, res, key=agreed.key, algo=self.algo, plain=self.plain,
                      route=self.route, progress=self.progress, done_bytes=skipped_bytes)
        files.send(todo, plan)
        # -- done: DONE, then every ACK and the BYE.
        self.st.send(p.Done(files.sent_files).sealed(agreed.key).encode())
        while files.bye is None:
            files.on_event(self.st.next())
        if files.pending:
            raise ProtocolError(f"the receiver said BYE with {len(files.pending)} files unacknowledged")
        res.receiver = files.bye.summary


__all__ = ["PROGRESS_CHUNK", "SendResult", "Source", "collect", "send"]
