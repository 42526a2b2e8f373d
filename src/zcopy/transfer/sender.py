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
import secrets
import select
import socket
import ssl
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import NoReturn

from zcopy import FileChannel, RouteUnavailable, TruncatedFileError, routes
from zcopy.transfer import certs, checksum, hashing, names, tls
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import (
    E_EXISTS,
    E_IO,
    E_MODE,
    E_UNSUPPORTED,
    ERROR_NAMES,
    AuthError,
    ModeError,
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
    links: int = 0
    skipped: int = 0
    failed: list[dict[str, object]] = field(default_factory=list)
    bytes_sent: int = 0
    bytes_total: int = 0
    bytes_resumed: int = 0
    batched_files: int = 0
    seconds: float = 0.0
    checksum: str = "xxh3"
    checksum_seconds: float = 0.0
    encryption: str = "tls1.3"
    certificate: str = ""
    routes: dict[str, int] = field(default_factory=dict)
    receiver: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def collect(paths: Sequence[str | os.PathLike[str]], links: bool = False) -> tuple[list[Source], list[str]]:
    """Walk PATHs like `cp -r`: a file → its basename, a directory `d` → `d`, `d/...`. Symlinks found inside
    directories are sent as links with `links`, else skipped with a warning; special files are always skipped."""
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
            _walk(path, name, sources, warnings, links)
        else:
            raise TransferError(f"{path}: not a regular file or directory")
    return sources, warnings


def _entry(name: bytes, st: os.stat_result, target: bytes | None = None) -> p.Entry:
    is_dir = stat.S_ISDIR(st.st_mode)
    size = 0 if is_dir or target is not None else st.st_size
    return p.Entry(name, is_dir, size, stat.S_IMODE(st.st_mode), st.st_mtime_ns, target)


def _walk(path: str, name: bytes, sources: list[Source], warnings: list[str], links: bool) -> None:
    with os.scandir(path) as it:
        children = sorted(it, key=lambda d: d.name)
    for de in children:
        st = de.stat(follow_symlinks=False)
        child = name + b"/" + os.fsencode(de.name)
        if stat.S_ISDIR(st.st_mode):
            sources.append(Source(_entry(child, st), de.path, nested=True))
            _walk(de.path, child, sources, warnings, links)
        elif stat.S_ISREG(st.st_mode):
            sources.append(Source(_entry(child, st), de.path, nested=True))
        elif stat.S_ISLNK(st.st_mode) and links:
            sources.append(Source(_entry(child, st, os.readlink(os.fsencode(de.path))), de.path, nested=True))
        else:
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "special file"
            hint = "; --links on both sides sends symlinks as links" if kind == "symlink" else ""
            warnings.append(f"skipped {de.path}: {kind} (only regular files and directories are sent{hint})")


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
    plain: bool = False,
    links: bool = False,
    fingerprint: str | None = None,
) -> SendResult:
    """Send files and directory trees to a `Receiver` at `address`.

    Encrypted (TLS 1.3) unless `plain`; the receiver must be in the same mode. Returns a SendResult; files the
    receiver did not publish (checksum mismatch, source changed) are in `failed`. Raises TransferError
    (RemoteError when the receiver refused, AuthError, ModeError, ProtocolError, IntegrityError) when the
    session itself fails, OSError when a source cannot be read.
    `timeout` bounds each wait on the network (connect, a stalled send or receive), not the whole transfer.
    `route` forces the body route of large files in plain mode (e.g. "readwrite" to compare with a plain
    read+send; default: sendfile with visible fallbacks); an impossible one raises RouteUnavailable before any
    file is sent. `links` sends symlinks inside directories as links (the receiver needs links too).
    `fingerprint` ("SHA256:<hex>", as `zcopy recv` prints it) pins the receiver's certificate: any other is refused
    before HELLO, which authenticates the receiver even without a token.
    """
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
    sources, warnings = collect(paths, links)
    names.check_tree((s.entry.name, s.entry.is_dir) for s in sources)
    tok = token.encode() if isinstance(token, str) else token
    t0 = time.perf_counter()
    sock = socket.create_connection(address, timeout=timeout)
    session = _Session(sock, sources, tok, resume, checksum.ALGORITHMS[checksum_name], progress, route, plain,
                       links)
    session.pin = fingerprint
    try:
        # Small frames must not wait for delayed ACKs (Nagle); the FILE header is sent with MSG_MORE so it
        # still shares a segment with the start of the body.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session.result.warnings += warnings
        session.result.checksum = checksum_name
        session.run()
    finally:
        session.sock.close()
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
        plain: bool = False,
        links: bool = False,
    ) -> None:
        self.sock = sock
        self.route = route
        self.sources = sources
        self.token = token
        self.resume = resume
        self.algo = algo
        self.progress = progress
        self.plain = plain
        self.links = links
        self.dec = p.Decoder("receiver")
        self.result = SendResult(encryption="none" if plain else "tls1.3")
        self.pending: set[int] = set()
        self.bye: p.Bye | None = None
        self.buf = bytearray(hashing.BUFFER_SIZE)
        self.done_bytes = 0
        self.key = b""
        self.sent_files = 0  # TRAILERs and BATCH items sent: DONE carries the count
        self.batch: list[p.BatchItem] = []
        self.batch_bytes = 0
        self.pin: str | None = None  # the receiver certificate's expected fingerprint, if the user gave one

    # -- reading the receiver's stream --------------------------------------------------------------------
    def _next(self, exact: bool = False) -> p.Event:
        """The next frame from the receiver, blocking. `exact`: read no byte past it (before TLS starts)."""
        while True:
            ev = self.dec.next_event()
            if ev is not p.NEED_DATA:
                if isinstance(ev, p.Error):
                    raise RemoteError(f"receiver: {ERROR_NAMES.get(ev.code, 'error')}: {ev.message}", ev.code)
                return ev
            data = self.sock.recv(max(1, self.dec.wanted()) if exact else 1 << 16)
            if not data:
                raise TransferError("the receiver closed the connection unexpectedly", E_IO)
            self.dec.feed(data)

    def _expect(self, kind: type[p.Message], exact: bool = False) -> p.Message:
        ev = self._next(exact)
        if not isinstance(ev, kind):
            raise ProtocolError(f"expected {kind.__name__} from the receiver, got {type(ev).__name__}")
        return ev

    def _poll_acks(self) -> None:
        """Take whatever ACKs have arrived without waiting: ACKs are pipelined behind the bodies."""
        if isinstance(self.sock, ssl.SSLSocket):
            # Readable bytes may be a TLS record that holds no application data (a session ticket): a blocking
            # recv() would then wait for the next ACK, which the receiver only sends after more files. Read
            # without blocking instead, until TLS wants more bytes.
            timeout = self.sock.gettimeout()
            self.sock.setblocking(False)
            try:
                while True:
                    try:
                        data = self.sock.recv(1 << 16)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        break
                    if not data:
                        break  # EOF: reported by the blocking read at the end
                    self.dec.feed(data)
            finally:
                self.sock.settimeout(timeout)
        else:
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
            p.verify(self.key, b"ack", ev.signed, ev.mac, "an ACK from the receiver")
            for it in ev.items:
                if it.index not in self.pending:
                    raise ProtocolError(f"ACK for entry {it.index}, which is not awaiting one")
                self.pending.discard(it.index)
                if it.status == p.S_OK:
                    self.result.files += 1
                else:
                    name = self.sources[it.index].path
                    self.result.failed.append({"path": name, "code": it.code, "error": it.message})
        elif isinstance(ev, p.Bye):
            p.verify(self.key, b"bye", ev.signed, ev.mac, "the receiver's BYE")
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
        return TransferError(f"connection to the receiver lost: {getattr(exc, 'strerror', None) or exc}", E_IO)

    # -- the session ---------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except (RemoteError, ModeError):
            raise
        except RouteUnavailable as exc:  # a forced route the kernel refused: a session error like any other
            with contextlib.suppress(OSError):
                self.sock.sendall(p.Error(E_IO, str(exc)).encode())
            raise TransferError(str(exc), E_IO) from None
        except TransferError as exc:  # e.g. a malformed frame from the receiver: tell it before leaving
            with contextlib.suppress(OSError, ValueError):
                self.sock.sendall(p.Error(exc.code, str(exc)).encode())
            raise
        except ssl.SSLError as exc:
            raise TransferError(f"TLS failed: {exc.reason or exc}", E_IO) from None
        except (ConnectionError, TimeoutError) as exc:
            raise self._remote_reason(exc) from exc
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                raise self._remote_reason(exc) from exc
            raise

    def _open_stream(self) -> bytes:
        """Preamble and OPEN in the clear, then (unless plain) the TLS handshake; returns the receiver's
        certificate fingerprint (b"" in plain mode)."""
        mode = p.M_PLAIN if self.plain else p.M_TLS
        self.sock.sendall(p.encode_preamble() + p.Open(mode).encode())
        theirs = self._expect(p.Open, exact=True)
        assert isinstance(theirs, p.Open)
        if theirs.mode != mode:
            if self.plain:
                raise ModeError("the receiver is encrypted (TLS, the default) and this sender has --plain: drop "
                                "--plain here, or start `zcopy recv --plain` for a trusted network", E_MODE)
            raise ModeError("the receiver runs with --plain (unencrypted): add --plain here too if the network "
                            "is trusted, or restart the receiver without --plain", E_MODE)
        if self.plain:
            return b""
        tsock = tls.client_context().wrap_socket(self.sock, server_hostname=None)
        self.sock = tsock
        der = tls.peer_certificate(tsock)
        try:
            certs.check_validity(der, "the receiver's")
        except certs.CertificateError as exc:
            raise TransferError(str(exc), E_IO) from None
        self.result.certificate = certs.fingerprint_text(der)
        if self.pin is not None and self.pin.strip().lower() != self.result.certificate.lower():
            raise AuthError(f"the receiver's certificate is {self.result.certificate}, not the pinned {self.pin}: "
                            "refused (another receiver, or a man in the middle)")
        return certs.fingerprint(der)

    def _run(self) -> None:
        fp = self._open_stream()
        nonce = secrets.token_bytes(p.NONCE_SIZE)
        flags = (p.H_RESUME if self.resume else 0) | (p.H_LINKS if self.links else 0)
        hello = p.Hello(p.FEATURES, nonce, self.algo, flags).encode()
        mt = p.Transcript()
        mt.add(hello[p.HEADER_SIZE :])
        self.sock.sendall(hello)
        welcome = self._expect(p.Welcome)
        assert isinstance(welcome, p.Welcome)
        pt = p.Transcript()
        pt.add(self.dec.last_payload)
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
            self.sock.sendall(p.Auth(p.sender_proof(self.token, nonce, welcome.nonce, fp)).encode())
            ok = self._expect(p.AuthOk)
            assert isinstance(ok, p.AuthOk)
            if not p.proof_ok(p.receiver_proof(self.token, nonce, welcome.nonce, fp), ok.mac):
                self._fail(AuthError("the receiver could not prove it knows the token (wrong token, or a "
                                     "man in the middle)"))
        elif self.token is not None:
            # We were given a token, so we expect to talk to a receiver that knows it; one that does not ask
            # for it cannot prove it, and may be an impostor.
            self._fail(AuthError("the receiver does not require a token, so it cannot prove it knows ours"))
        self.key = p.session_key(self.token, nonce, welcome.nonce, fp)
        entries = [s.entry for s in self.sources]
        # The manifest streams in chunks (no size limit); MANIFEST_END authenticates HELLO and every chunk.
        for i in range(0, len(entries), p.CHUNK_ENTRIES):
            frame = p.Manifest(tuple(entries[i : i + p.CHUNK_ENTRIES])).encode()
            mt.add(frame[p.HEADER_SIZE :])
            self.sock.sendall(frame)
        self.sock.sendall(p.ManifestEnd(len(entries), p.manifest_mac(self.key, mt.digest(), len(entries))).encode())
        plan: list[p.PlanEntry] = []
        while True:
            ev = self._next()
            if isinstance(ev, p.Plan):
                pt.add(self.dec.last_payload)
                plan += ev.entries
                if len(plan) > len(entries):
                    self._fail(ProtocolError(f"PLAN has more entries than the {len(entries)} sent"))
                continue
            if not isinstance(ev, p.PlanEnd):
                raise ProtocolError(f"expected PLAN or PLAN_END from the receiver, got {type(ev).__name__}")
            break
        if not p.proof_ok(p.plan_mac(self.key, pt.digest(), ev.overwrite, ev.count), ev.mac):
            raise p.IntegrityError("the receiver's plan failed its integrity check: the stream was altered on "
                                   "the way, or the peer does not hold the session key")
        if ev.count != len(entries) or len(plan) != len(entries):
            self._fail(ProtocolError(f"PLAN has {len(plan)} entries for {len(entries)} sent"))
        self.result.bytes_total = sum(e.size for e in entries)
        self.result.dirs = sum(e.is_dir for e in entries)
        self.result.links = sum(e.is_link for e in entries)
        todo = self._decide(plan, ev.overwrite)
        for i in todo:
            src = self.sources[i]
            if src.entry.size <= p.SMALL_FILE_MAX:
                if self._add_small(i):
                    self._poll_acks()  # after each ~1 MiB frame, not after each small file
            else:
                self._flush_batch()
                self._send_file(i, plan[i])
                self._poll_acks()
        self._flush_batch()
        self.sock.sendall(p.Done(self.sent_files).sealed(self.key).encode())
        while self.bye is None:
            self._on_receiver_event(self._next())
        if self.pending:
            raise ProtocolError(f"the receiver said BYE with {len(self.pending)} files unacknowledged")
        self.result.receiver = self.bye.summary

    def _decide(self, plan: list[p.PlanEntry], overwrite: bool) -> list[int]:
        """Files (and links) to send. In a resumed session, a final file already identical on the receiver is
        skipped; a different one is refused unless the receiver allows overwriting (checked before any body
        moves). Links travel in the manifest: the receiver makes them itself."""
        todo = []
        palgo = checksum.prefix_algorithm(self.algo)
        for i, (src, pe) in enumerate(zip(self.sources, plan, strict=True)):
            if not src.entry.is_file:
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
                if not overwrite:
                    self._fail(TransferError(
                        f"{src.entry.name.decode('utf-8', 'replace')} exists on the receiver and differs "
                        "(the receiver needs --overwrite)", E_EXISTS))
            todo.append(i)
        return todo

    def _open(self, src: Source) -> FileChannel:
        flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NOFOLLOW if src.nested else 0)
        return FileChannel(os.open(src.path, flags), own=True, name=src.path)

    def _count(self, route: str, n: int) -> None:
        self.result.routes[route] = self.result.routes.get(route, 0) + n
        self.result.bytes_sent += n
        self.done_bytes += n

    # -- small files: many per BATCH frame ------------------------------------------------------------------
    def _add_small(self, index: int) -> bool:
        """Queue one small file in the current BATCH; True if that filled and sent the frame."""
        src = self.sources[index]
        size = src.entry.size
        flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NOFOLLOW if src.nested else 0)
        fd = os.open(src.path, flags)
        try:
            data = os.read(fd, size + 1) if size else b""  # one byte more: a file that grew is caught here
            st = os.fstat(fd)
        finally:
            os.close(fd)
        # The walk's size and mtime vs. the file after the read: any change since the manifest is caught.
        changed = len(data) != size or st.st_size != size or st.st_mtime_ns != src.entry.mtime_ns
        self.pending.add(index)
        self.sent_files += 1
        if changed:
            self.result.warnings.append(f"{src.path} changed while being sent (size or mtime); not published")
            item = p.BatchItem(index, p.S_SOURCE_CHANGED, b"", b"")
        else:
            t = time.perf_counter()
            digest = checksum.digest_of(self.algo, data)
            self.result.checksum_seconds += time.perf_counter() - t
            item = p.BatchItem(index, p.S_OK, digest, data)
            self._count("readwrite", size)
            self.result.batched_files += 1
        self.batch.append(item)
        self.batch_bytes += len(item.body) + 48
        if self.batch_bytes >= p.BATCH_TARGET or len(self.batch) >= p.MAX_BATCH_ITEMS:
            self._flush_batch()
            return True
        return False

    def _flush_batch(self) -> None:
        if not self.batch:
            return
        self.sock.sendall(p.Batch.build(self.key, self.batch))
        self.batch = []
        self.batch_bytes = 0
        if self.progress is not None:
            self.progress(self.done_bytes, self.result.bytes_total)

    # -- large files: FILE + body + TRAILER ------------------------------------------------------------------
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
            header = p.FileStart(index, start, length).encode()
            if self.plain:
                # MSG_MORE: the header waits for the body's first bytes instead of leaving as a tiny segment.
                self.sock.sendall(header, socket.MSG_MORE if length else 0)
            else:
                self.sock.sendall(header)  # SSLSocket.sendall takes no flags
            self.pending.add(index)
            self.sent_files += 1
            self.done_bytes += start
            if self.plain:
                moved = self._body(ch, start, length)
            else:
                if hashed != start:  # the prefix was checked with another algorithm: hash it for the digest
                    hashing.update_read(hasher, ch, hashed, start, self.buf)
                moved = self._body_copy(ch, start, length, hasher)
                hashed = start + moved
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
            self.sock.sendall(p.Trailer(index, p.S_SOURCE_CHANGED, b"").sealed(self.key).encode())
        else:
            self.sock.sendall(p.Trailer(index, p.S_OK, digest).sealed(self.key).encode())

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
            self._count(ch.last_route or "unknown", n)
            moved += n
            if self.progress is not None:
                self.progress(self.done_bytes, self.result.bytes_total)
            if n < want:
                break  # the source ended early: it shrank
        return moved

    def _body_copy(self, ch: FileChannel, start: int, length: int, hasher: checksum.Hasher) -> int:
        """TLS: pread into the reused buffer, hash it there while hot, write it to the TLS socket (which
        encrypts it: a copy through user space the route name says). Returns bytes moved."""
        view = memoryview(self.buf)
        moved = 0
        since = 0
        while moved < length:
            n = ch.readinto(view[: min(len(view), length - moved)], start + moved)
            if n == 0:
                break  # the source shrank
            hasher.update(view[:n])
            self.sock.sendall(view[:n])
            self._count("readwrite", n)
            moved += n
            since += n
            if self.progress is not None and since >= PROGRESS_CHUNK:
                since = 0
                self.progress(self.done_bytes, self.result.bytes_total)
        if self.progress is not None:
            self.progress(self.done_bytes, self.result.bytes_total)
        return moved

    def _pad(self, n: int) -> None:
        while n:
            k = min(n, len(_ZEROS))
            self.sock.sendall(_ZEROS[:k])
            n -= k


__all__ = ["SendResult", "Source", "collect", "send"]
