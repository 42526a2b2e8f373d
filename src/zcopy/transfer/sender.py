"""Sender glue for `zcopy send`: walks the PATHs into a manifest, speaks the protocol over one TCP connection,
and moves each file body with FileChannel.transfer_to (route sendfile: the bytes never enter user space).

A source that shrinks, grows or changes while it is sent is reported and its TRAILER says so, so the receiver
does not publish it; the rest of the session carries on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import socket
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import NoReturn

from zcopy import FileChannel, RouteUnavailable, TruncatedFileError, routes
from zcopy.transfer import checksum, hashing, names
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import (
    E_EXISTS,
    E_IO,
    E_UNSUPPORTED,
    ERROR_NAMES,
    AuthError,
    ProtocolError,
    RemoteError,
    TransferError,
)

# With a progress callback, bodies move in 16 MiB transfer_to calls so the bar moves; without one, each file
# is a single call (the route loops inside). 16 MiB is ~10 ms at loopback speed: smooth, and the extra fstat
# per call is noise.
PROGRESS_CHUNK = 16 << 20
# Zero padding for a source that shrank mid-body: the stream must still carry the announced length.
_ZEROS = bytes(1 << 16)
# How long to wait for the receiver's ERROR frame after the connection broke under us.
_ERROR_GRACE_S = 2.0

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Source:
    """A manifest entry and where its bytes come from."""

    entry: p.Entry
    path: str
    nested: bool  # found while walking a directory (opened with O_NOFOLLOW), not named on the command line


@dataclass
class SendResult:
    """What a session did. `routes` maps the sender's route names to body bytes they moved; `receiver` is the
    receiver's own summary (its routes, bytes, files) from its BYE frame."""

    files: int = 0
    dirs: int = 0
    skipped: int = 0
    failed: list[dict[str, object]] = field(default_factory=list)
    bytes_sent: int = 0
    bytes_total: int = 0
    bytes_resumed: int = 0
    seconds: float = 0.0
    checksum: str = "xxh3"
    checksum_seconds: float = 0.0
    routes: dict[str, int] = field(default_factory=dict)
    receiver: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def collect(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Source], list[str]]:
    """Walk PATHs like `cp -r`: a file → its basename, a directory `d` → `d`, `d/...`. Symlinks and special
    files found inside directories are skipped with a warning (the protocol carries regular files and dirs)."""
    sources: list[Source] = []
    warnings: list[str] = []
    for raw in paths:
        path = os.fspath(raw)
        st = os.stat(path)  # a symlink named on the command line is followed, as cp -r does
        base = os.path.basename(os.path.normpath(os.path.abspath(path)))
        if not base:
            raise TransferError(f"{path}: cannot send the root directory itself; name what is inside it")
        name = os.fsencode(base)
        if stat.S_ISREG(st.st_mode):
            sources.append(Source(_entry(name, st), path, nested=False))
        elif stat.S_ISDIR(st.st_mode):
            sources.append(Source(_entry(name, st), path, nested=False))
            _walk(path, name, sources, warnings)
        else:
            raise TransferError(f"{path}: not a regular file or directory")
    return sources, warnings


def _entry(name: bytes, st: os.stat_result) -> p.Entry:
    is_dir = stat.S_ISDIR(st.st_mode)
    return p.Entry(name, is_dir, 0 if is_dir else st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns)


def _walk(path: str, name: bytes, sources: list[Source], warnings: list[str]) -> None:
    with os.scandir(path) as it:
        children = sorted(it, key=lambda d: d.name)
    for de in children:
        st = de.stat(follow_symlinks=False)
        child = name + b"/" + os.fsencode(de.name)
        if stat.S_ISDIR(st.st_mode):
            sources.append(Source(_entry(child, st), de.path, nested=True))
            _walk(de.path, child, sources, warnings)
        elif stat.S_ISREG(st.st_mode):
            sources.append(Source(_entry(child, st), de.path, nested=True))
        else:
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "special file"
            warnings.append(f"skipped {de.path}: {kind} (only regular files and directories are sent)")


def send(
    paths: Sequence[str | os.PathLike[str]],
    address: tuple[str, int],
    *,
    token: str | bytes | None = None,
    resume: bool = False,
    checksum_name: str = "xxh3",
    progress: Progress | None = None,
    timeout: float | None = 60.0,
    route: str | None = None,
) -> SendResult:
    """Send files and directory trees to a `Receiver` at `address`.

    Returns a SendResult; files the receiver did not publish (checksum mismatch, source changed) are in
    `failed`. Raises TransferError (RemoteError when the receiver refused, AuthError, ProtocolError) when the
    session itself fails, OSError when a source cannot be read.
    `timeout` bounds each wait on the network (connect, a stalled send or receive), not the whole transfer.
    `route` forces the body route (e.g. "readwrite" to compare with a plain read+send; default: sendfile with
    visible fallbacks); an impossible one raises RouteUnavailable before any file is sent.
    """
    if checksum_name not in checksum.ALGORITHMS:
        raise ValueError(f"unknown checksum {checksum_name!r}; choose from {', '.join(checksum.ALGORITHMS)}")
    routes.require(route, "file", "socket")
    sources, warnings = collect(paths)
    names.check_tree((s.entry.name, s.entry.is_dir) for s in sources)
    tok = token.encode() if isinstance(token, str) else token
    t0 = time.perf_counter()
    sock = socket.create_connection(address, timeout=timeout)
    try:
        # Small frames must not wait for delayed ACKs (Nagle); the FILE header is sent with MSG_MORE so it
        # still shares a segment with the start of the body.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _Session(sock, sources, tok, resume, checksum.ALGORITHMS[checksum_name], progress, route)
        session.result.warnings += warnings
        session.result.checksum = checksum_name
        session.run()
    finally:
        sock.close()
    session.result.seconds = time.perf_counter() - t0
    return session.result


class _Session:
    def __init__(
        self,
        sock: socket.socket,
        sources: list[Source],
        token: bytes | None,
        resume: bool,
        algo: int,
        progress: Progress | None,
        route: str | None = None,
    ) -> None:
        self.sock = sock
        self.route = route
        self.sources = sources
        self.token = token
        self.resume = resume
        self.algo = algo
        self.progress = progress
        self.dec = p.Decoder("receiver")
        self.result = SendResult()
        self.pending: set[int] = set()
        self.bye: p.Bye | None = None
        self.buf = bytearray(hashing.BUFFER_SIZE)
        self.done_bytes = 0

    # -- reading the receiver's stream --------------------------------------------------------------------
    def _next(self) -> p.Event:
        """The next frame from the receiver, blocking."""
        while True:
            ev = self.dec.next_event()
            if ev is not p.NEED_DATA:
                if isinstance(ev, p.Error):
                    raise RemoteError(f"receiver: {ERROR_NAMES.get(ev.code, 'error')}: {ev.message}", ev.code)
                return ev
            data = self.sock.recv(1 << 16)
            if not data:
                raise TransferError("the receiver closed the connection unexpectedly", E_IO)
            self.dec.feed(data)

    def _expect(self, kind: type[p.Message]) -> p.Message:
        ev = self._next()
        if not isinstance(ev, kind):
            raise ProtocolError(f"expected {kind.__name__} from the receiver, got {type(ev).__name__}")
        return ev

    def _poll_acks(self) -> None:
        """Take whatever ACKs have arrived without waiting: ACKs are pipelined behind the bodies."""
        # poll() first: a Python socket with a timeout waits inside recv() even with MSG_DONTWAIT.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while poller.poll(0):
            data = self.sock.recv(1 << 16)
            if not data:
                break  # EOF: reported by the blocking read at the end
            self.dec.feed(data)
        while True:
            ev = self.dec.next_event()
            if ev is p.NEED_DATA:
                return
            self._on_receiver_event(ev)

    def _on_receiver_event(self, ev: p.Event) -> None:
        if isinstance(ev, p.Ack):
            if ev.index not in self.pending:
                raise ProtocolError(f"ACK for entry {ev.index}, which is not awaiting one")
            self.pending.discard(ev.index)
            if ev.status == p.S_OK:
                self.result.files += 1
            else:
                name = self.sources[ev.index].path
                self.result.failed.append({"path": name, "code": ev.code, "error": ev.message})
        elif isinstance(ev, p.Bye):
            self.bye = ev
        elif isinstance(ev, p.Error):
            raise RemoteError(f"receiver: {ERROR_NAMES.get(ev.code, 'error')}: {ev.message}", ev.code)
        else:
            raise ProtocolError(f"unexpected {type(ev).__name__} from the receiver")

    def _fail(self, exc: TransferError) -> NoReturn:
        """Stop the session; run() tells the receiver why in an ERROR frame."""
        raise exc

    def _remote_reason(self, exc: OSError) -> TransferError:
        """After the connection broke: the receiver's ERROR frame if it sent one, else the OS error."""
        try:
            self.sock.settimeout(_ERROR_GRACE_S)
            while True:
                ev = self.dec.next_event()
                if isinstance(ev, p.Error):
                    return RemoteError(f"receiver: {ERROR_NAMES.get(ev.code, 'error')}: {ev.message}", ev.code)
                if ev is p.NEED_DATA:
                    data = self.sock.recv(1 << 16)
                    if not data:
                        break
                    self.dec.feed(data)
        except (OSError, TransferError):
            pass
        return TransferError(f"connection to the receiver lost: {exc.strerror or exc}", E_IO)

    # -- the session ---------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except RemoteError:
            raise
        except RouteUnavailable as exc:  # a forced route the kernel refused: a session error like any other
            with contextlib.suppress(OSError):
                self.sock.sendall(p.Error(E_IO, str(exc)).encode())
            raise TransferError(str(exc), E_IO) from None
        except TransferError as exc:  # e.g. a malformed frame from the receiver: tell it before leaving
            with contextlib.suppress(OSError):
                self.sock.sendall(p.Error(exc.code, str(exc)).encode())
            raise
        except (ConnectionError, TimeoutError) as exc:
            raise self._remote_reason(exc) from exc
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                raise self._remote_reason(exc) from exc
            raise

    def _run(self) -> None:
        nonce = secrets.token_bytes(p.NONCE_SIZE)
        self.sock.sendall(p.encode_preamble() + p.Hello(p.FEATURES, nonce).encode())
        welcome = self._expect(p.Welcome)
        assert isinstance(welcome, p.Welcome)
        features = p.FEATURES & welcome.features
        need = p.ALGO_FEATURE[self.algo]
        if need and not features & need:
            self._fail(TransferError(f"the receiver does not offer checksum {checksum.NAMES[self.algo]}",
                                     E_UNSUPPORTED))
        if self.resume and not features & p.F_RESUME:
            self._fail(TransferError("the receiver does not offer resume", E_UNSUPPORTED))
        if welcome.auth_required:
            if self.token is None:
                self._fail(AuthError("the receiver requires a token (--token or ZCOPY_TOKEN)"))
            assert self.token is not None
            self.sock.sendall(p.Auth(p.sender_proof(self.token, nonce, welcome.nonce)).encode())
            ok = self._expect(p.AuthOk)
            assert isinstance(ok, p.AuthOk)
            if not p.proof_ok(p.receiver_proof(self.token, nonce, welcome.nonce), ok.mac):
                self._fail(AuthError("the receiver could not prove it knows the token"))
        elif self.token is not None:
            # We were given a token, so we expect to talk to a receiver that knows it; one that does not ask
            # for it cannot prove it, and may be an impostor.
            self._fail(AuthError("the receiver does not require a token, so it cannot prove it knows ours"))
        entries = tuple(s.entry for s in self.sources)
        try:
            manifest = p.Manifest(self.algo, self.resume, entries).encode()
        except ValueError:  # over MAX_PAYLOAD[T_MANIFEST]
            self._fail(TransferError(f"{len(entries)} entries do not fit in one manifest (64 MiB); send the tree "
                                     "in parts", E_UNSUPPORTED))
        self.sock.sendall(manifest)
        plan = self._expect(p.Plan)
        assert isinstance(plan, p.Plan)
        if len(plan.entries) != len(entries):
            self._fail(ProtocolError(f"PLAN has {len(plan.entries)} entries for {len(entries)} sent"))
        self.result.bytes_total = sum(e.size for e in entries)
        self.result.dirs = sum(e.is_dir for e in entries)
        todo = self._decide(plan)
        for i in todo:
            self._send_file(i, plan.entries[i])
            self._poll_acks()
        self.sock.sendall(p.Done().encode())
        while self.bye is None:
            self._on_receiver_event(self._next())
        if self.pending:
            raise ProtocolError(f"the receiver said BYE with {len(self.pending)} files unacknowledged")
        self.result.receiver = self.bye.summary

    def _decide(self, plan: p.Plan) -> list[int]:
        """Files to send. In a resumed session, a final file already identical on the receiver is skipped; a
        different one is refused unless the receiver allows overwriting (checked before any body moves)."""
        todo = []
        palgo = checksum.prefix_algorithm(self.algo)
        for i, (src, pe) in enumerate(zip(self.sources, plan.entries, strict=True)):
            if src.entry.is_dir:
                continue
            if pe.state == p.P_EXISTS:
                same = False
                if pe.have == src.entry.size:
                    with self._open(src) as ch:
                        same = hashing.digest_read(palgo, ch, src.entry.size) == pe.digest
                if same:
                    self.result.skipped += 1
                    self.done_bytes += src.entry.size
                    continue
                if not plan.overwrite:
                    self._fail(TransferError(
                        f"{src.entry.name.decode('utf-8', 'replace')} exists on the receiver and differs "
                        "(the receiver needs --overwrite)", E_EXISTS))
            todo.append(i)
        return todo

    def _open(self, src: Source) -> FileChannel:
        flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NOFOLLOW if src.nested else 0)
        return FileChannel(os.open(src.path, flags), own=True, name=src.path)

    def _send_file(self, index: int, pe: p.PlanEntry) -> None:
        src = self.sources[index]
        size = src.entry.size
        res = self.result
        with self._open(src) as ch:
            st = os.fstat(ch.fileno())
            changed = st.st_size != size or st.st_mtime_ns != src.entry.mtime_ns
            hasher = checksum.new_hasher(self.algo)
            hashed = 0  # bytes [0, hashed) already fed to hasher
            start = 0
            if not changed and pe.state == p.P_PARTIAL and 0 < pe.have <= size:
                palgo = checksum.prefix_algorithm(self.algo)
                t = time.perf_counter()
                ph = checksum.new_hasher(palgo)
                got = hashing.update_read(ph, ch, 0, pe.have, self.buf)
                res.checksum_seconds += time.perf_counter() - t
                if got == pe.have and ph.digest() == pe.digest:
                    start = pe.have
                    res.bytes_resumed += start
                    if palgo == self.algo:
                        hasher, hashed = ph, start
            length = size - start
            if changed:
                length = 0
            # MSG_MORE: the header waits for the body's first bytes instead of leaving as a tiny segment.
            self.sock.sendall(p.FileStart(index, start, length).encode(), socket.MSG_MORE if length else 0)
            self.pending.add(index)
            self.done_bytes += start
            moved = self._body(ch, start, length)
            if moved < length:
                changed = True
                self._pad(length - moved)
            digest = b""
            if not changed and self.algo != checksum.NONE:
                t = time.perf_counter()
                got = hashing.update_read(hasher, ch, hashed, size, self.buf)
                res.checksum_seconds += time.perf_counter() - t
                changed = got != size - hashed
                digest = hasher.digest()
            if not changed:
                st = os.fstat(ch.fileno())
                changed = st.st_size != size or st.st_mtime_ns != src.entry.mtime_ns
        if changed:
            res.warnings.append(f"{src.path} changed while being sent (size or mtime); not published")
            self.sock.sendall(p.Trailer(index, p.S_SOURCE_CHANGED, b"").encode())
        else:
            self.sock.sendall(p.Trailer(index, p.S_OK, digest).encode())

    def _body(self, ch: FileChannel, start: int, length: int) -> int:
        """Move [start, start+length) to the socket; returns bytes moved (less if the source shrank)."""
        moved = 0
        step = PROGRESS_CHUNK if self.progress is not None else length
        while moved < length:
            want = min(step, length - moved)
            try:
                n = ch.transfer_to(start + moved, want, self.sock, route=self.route)
            except TruncatedFileError as exc:
                n = exc.bytes_moved
                want = n + 1  # mark as short
            route = ch.last_route or "unknown"
            self.result.routes[route] = self.result.routes.get(route, 0) + n
            self.result.bytes_sent += n
            moved += n
            self.done_bytes += n
            if self.progress is not None:
                self.progress(self.done_bytes, self.result.bytes_total)
            if n < want:
                break  # the source ended early: it shrank
        return moved

    def _pad(self, n: int) -> None:
        while n:
            k = min(n, len(_ZEROS))
            self.sock.sendall(_ZEROS[:k])
            n -= k


__all__ = ["SendResult", "Source", "collect", "send"]
