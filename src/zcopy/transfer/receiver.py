"""Receiver glue for `zcopy recv`: listens, runs one session at a time, and lands each file safely.

Routes, as reported in SessionResult.routes:
- `direct` (files above protocol.SMALL_FILE_MAX, the default where the file system does direct I/O): the body
  lands in a page-aligned buffer (received there in plain mode, decrypted there with TLS), is hashed there while
  hot, and goes to the disk by O_DIRECT: nothing is read back, and the page cache is left to the user's work.
- `splice` (plain mode with --cache, or where direct I/O is unavailable, e.g. tmpfs): socket → pipe → partial
  file with FileChannel.transfer_from, never in user space; the digest is computed afterwards over an mmap view.
- `readwrite` (small files in both modes; TLS with --cache): the bytes are in user space anyway (TLS decrypts
  there; a BATCH frame carries many small files), so they are hashed there and written with one pwrite.

Durability is batched: a file is written to a hidden partial next to its final name (0600, under an OFD lock),
verified against the sender's authenticated digest, given its mode and mtime, and queued. A queue of up to
PUBLISH_FILES files (or PUBLISH_BYTES) is made durable with one syncfs, then each partial is renamed to its final
name (never replacing a file that appeared meanwhile, unless --overwrite), each touched directory is fsynced once,
and one ACK frame reports the lot. A final name therefore only ever appears complete, verified and durable.
Every path is walked with dir_fd + O_NOFOLLOW below the target root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import secrets
import socket
import ssl
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import TracebackType

from zcopy import FileChannel, RouteUnavailable, _sys, routes
from zcopy.aligned import aligned_buffer, dio_alignment, page_cache_fs
from zcopy.routes import direct as direct_route
from zcopy.transfer import certs, checksum, durable, hashing, names, tls
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import (
    E_CHECKSUM,
    E_EXISTS,
    E_INTERNAL,
    E_IO,
    E_MODE,
    E_NOSPACE,
    E_SOURCE_CHANGED,
    E_UNSUPPORTED,
    ERROR_NAMES,
    AuthError,
    ModeError,
    ProtocolError,
    TransferError,
    UnsafeNameError,
)

# After refusing a session, keep reading (and discarding) for up to this long before closing, so the sender
# reads our ERROR frame instead of losing it to the RST a close with unread data would send.
LINGER_S = 1.0
# setuid/setgid bits are never recreated from a network peer's word.
_MODE_MASK = 0o7777 & ~(stat.S_ISUID | stat.S_ISGID)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A publish batch: one syncfs per this many files or bytes. Each queued partial stays open (holding its OFD lock)
# until renamed, so the receiver raises its soft descriptor limit toward the hard one to fit 2048 of them, and uses
# fewer where it cannot (half the soft limit, at least 64). Measured here on a 20,000 × 4 KiB tree: one syncfs
# costs ~10 ms whether it covers 512 or 2048 new files, so 2048 saves ~0.3 s of 40 syncs. 256 MiB bounds what a
# kill can cost a resume to re-verify.
PUBLISH_FILES = 2048
PUBLISH_BYTES = 256 << 20
# Descriptors kept free of the session's partials and directories (socket, listener, splice pipe, the embedding
# program's own files).
_FD_RESERVE = 64
# Manifest entries one session may announce: beyond this a hostile or broken sender is only eating memory.
MAX_ENTRIES = 10_000_000
# recv_into buffer: a BATCH frame (~1 MiB) arrives in a few calls; TLS bodies are read in pieces of this size.
_RECV_BUFFER = 1 << 20


class ConnectionDropped(TransferError):
    """The sender went away in the middle of the session; partial files are kept for --resume."""

    code = E_IO


@dataclass
class SessionResult:
    """One session as the receiver saw it: `routes` maps route names to body bytes they moved."""

    peer: str = ""
    files: int = 0
    dirs: int = 0
    links: int = 0
    skipped: int = 0
    bytes: int = 0
    user_bytes: int = 0
    batched_files: int = 0
    syncs: int = 0
    failed: list[dict[str, object]] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)
    encryption: str = ""
    checksum: str = ""
    checksum_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    error_code: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Receiver:
    """Accept zcopy sessions on `listen` and land files under `directory`.

    Sessions run one after another (serve_once / serve_forever), so two senders never race on the same
    partial file. Encrypted (TLS 1.3) unless `plain`, with the key pair `tls_cert`/`tls_key` or the one kept in
    the user's config directory (made on first use). `token` turns on HMAC challenge-response authentication
    bound to the certificate; `overwrite` allows replacing existing files; `links` accepts symlink entries;
    `cache` lands large files through the page cache (splice in plain mode) instead of by O_DIRECT.
    `route` forces the body route of large files in plain mode (e.g. "readwrite", a plain recv_into + pwrite,
    to compare); by default splice, with any fallback visible in each session's `routes`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        listen: tuple[str, int] = ("127.0.0.1", 9000),
        *,
        token: str | bytes | None = None,
        overwrite: bool = False,
        timeout: float | None = 60.0,
        route: str | None = None,
        plain: bool = False,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        links: bool = False,
        cache: bool = False,
    ) -> None:
        routes.require(route, "socket", "file")
        if route not in (None, "readwrite") and not plain:
            raise RouteUnavailable(route, "an encrypted session decrypts every body in user space: --route only "
                                          "chooses among zero-copy routes with --plain")
        self.cache = cache
        self.route = route
        self.directory = os.fspath(directory)
        self.token = token.encode() if isinstance(token, str) else token
        self.overwrite = overwrite
        self.timeout = timeout
        self.plain = plain
        self.links = links
        self.fingerprint = ""
        self.publish_files = _descriptor_budget(PUBLISH_FILES)
        # Descriptors a session may hold (queued partials + directory fds): the soft limit less a reserve for the
        # socket, the listener, the pipe and whatever the embedding program keeps open.
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.fd_budget = 1 << 20 if soft == resource.RLIM_INFINITY else max(64, soft - _FD_RESERVE)
        self._ctx: ssl.SSLContext | None = None
        self._fp = b""
        if not plain:
            self._ctx, der = tls.server_context(tls_cert, tls_key)
            self._fp = certs.fingerprint(der)
            self.fingerprint = certs.fingerprint_text(der)
        # The target directory itself may be a symlink (the user named it); only what lies below it is policed.
        self._root = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
            self._listener = socket.create_server(listen, family=family)
        except BaseException:
            os.close(self._root)
            raise
        host, port = self._listener.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)

    def fileno(self) -> int:
        return self._listener.fileno()

    def accept(self) -> tuple[socket.socket, str]:
        """Wait for the next sender: its connection and "host:port" (then call handle())."""
        conn, peer = self._listener.accept()
        return conn, f"{peer[0]}:{peer[1]}"

    def serve_once(self) -> SessionResult:
        return self.handle(*self.accept())

    def serve_forever(self, on_session: Callable[[SessionResult], None] | None = None) -> None:
        while True:
            result = self.serve_once()
            if on_session is not None:
                on_session(result)

    def handle(self, conn: socket.socket, peer: str = "") -> SessionResult:
        """Run one session on an accepted connection (closes it). Errors are reported to the sender and in
        the result, not raised."""
        session = _Session(self, conn)
        session.result.peer = peer
        t0 = time.perf_counter()
        try:
            session.run()
        finally:
            session.close()
            session.conn.close()
            conn.close()
        session.result.seconds = time.perf_counter() - t0
        return session.result

    def close(self) -> None:
        self._listener.close()
        if self._root >= 0:
            os.close(self._root)
            self._root = -1

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@dataclass
class _Pending:
    """A verified partial (or a new symlink) waiting for the batch's syncfs, then its rename."""

    index: int  # manifest index; -1 for a symlink (the sender awaits no ACK for it)
    parent: int
    partial: bytes
    final: bytes
    entry: p.Entry
    ch: FileChannel | None  # a large file's channel, open (holding its OFD lock) until renamed
    fd: int = -1  # a small file's descriptor, likewise

    def close(self) -> None:
        if self.ch is not None:
            self.ch.close()
        elif self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _pwrite_all(fd: int, view: memoryview, pos: int) -> None:
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], pos + done)


def _descriptor_budget(want: int) -> int:
    """How many partials a publish batch may hold open: `want` if the soft RLIMIT_NOFILE allows twice that
    (raised toward the hard limit if needed), else half the soft limit, at least 64."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * want
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft >= need:
        return want
    return max(64, soft // 2)


def _shown(e: p.Entry) -> str:
    return e.name.decode("utf-8", "backslashreplace")


# struct flock on 64-bit Linux (as zcopy.channel packs it): an exclusive lock on the whole file.
_WRLOCK = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
_SETLK = _sys.F_OFD_SETLK if _sys.F_OFD_SETLK is not None else fcntl.F_SETLK


def _create_locked(partial: bytes, parent: int, shown: str) -> int:
    """A small file's partial, empty, 0600 and under an OFD lock: created with O_EXCL (the common case, no
    truncate needed), or, if a leftover exists, opened, locked, then truncated."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fresh = True
    try:
        fd = os.open(partial, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=parent)
    except FileExistsError:
        fd = os.open(partial, flags, dir_fd=parent)
        fresh = False
    try:
        fcntl.fcntl(fd, _SETLK, _WRLOCK)
        if not fresh:
            os.ftruncate(fd, 0)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise TransferError(f"{shown} is being received by another session", E_EXISTS) from None
        raise
    return fd


class _Session:
    def __init__(self, receiver: Receiver, conn: socket.socket) -> None:
        self.rx = receiver
        self.conn: socket.socket = conn
        self.dec = p.Decoder("sender")
        self.buf = bytearray(_RECV_BUFFER)
        self.result = SessionResult(encryption="none" if receiver.plain else "tls1.3")
        self.dirs: dict[tuple[bytes, ...], int] = {(): receiver._root}
        self.entries: list[p.Entry] = []
        self.parts: list[tuple[bytes, ...]] = []  # each entry's checked name components
        self.plan: list[p.PlanEntry] = []
        self.algo = checksum.NONE
        self.received: set[int] = set()
        self.key = b""
        self.resume = False
        self.publish: list[_Pending] = []
        self.publish_bytes = 0
        self.acks: list[p.AckItem] = []
        self.trailers = 0  # TRAILERs and BATCH items received: DONE must carry the same count
        self.dbuf: memoryview | None = None  # the aligned buffer of TLS → O_DIRECT bodies, made on first use

    def close(self) -> None:
        for item in self.publish:  # a failed session: the partials stay for --resume, their locks go
            item.close()
        self.publish = []
        for parts, fd in self.dirs.items():
            if parts:
                os.close(fd)
        self.dirs = {}

    # -- stream --------------------------------------------------------------------------------------------
    def _next(self) -> p.Event:
        """Next event from the sender. Reads exactly what the decoder asks for, so body bytes stay in the
        socket for splice (and nothing past the clear-text OPEN is read before TLS starts)."""
        while True:
            ev = self.dec.next_event()
            if ev is not p.NEED_DATA:
                return ev
            want = max(1, self.dec.wanted())
            n = self.conn.recv_into(self.buf, min(want, len(self.buf)))
            if n == 0:
                raise ConnectionDropped("the sender closed the connection in the middle of the session")
            self.dec.feed(memoryview(self.buf)[:n])

    def _send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def run(self) -> None:
        try:
            self.conn.settimeout(self.rx.timeout)
            self._run()
        except ModeError as exc:
            self._refuse(exc.code, str(exc), reply=False)  # the sender read our OPEN and says so itself
        except TransferError as exc:
            self._refuse(exc.code, str(exc), reply=not isinstance(exc, _PeerError))
        except ssl.SSLError as exc:
            self._refuse(E_IO, f"TLS failed: {exc.reason or exc}", reply=False)
        except (ConnectionError, TimeoutError) as exc:
            self._refuse(E_IO, f"connection lost: {exc.strerror or exc}", reply=False)
        except OSError as exc:
            code = E_NOSPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else E_IO
            where = f": {exc.filename}" if exc.filename else ""
            self._refuse(code, f"{exc.strerror or exc}{where}")
        except RouteUnavailable as exc:  # a forced route the kernel refused for this socket or file
            self._refuse(E_IO, str(exc))
        except Exception as exc:  # a bug: still tell the sender, then let it surface
            self._refuse(E_INTERNAL, f"internal error: {exc!r}")
            raise

    def _refuse(self, code: int, message: str, reply: bool = True) -> None:
        self.result.error = message
        self.result.error_code = code
        if not reply:
            return
        with contextlib.suppress(OSError, ValueError):
            self._send(p.Error(code, message).encode())
            self.conn.shutdown(socket.SHUT_WR)
            self.conn.settimeout(LINGER_S)
            deadline = time.monotonic() + LINGER_S
            while time.monotonic() < deadline and self.conn.recv_into(self.buf):
                pass

    def _open_stream(self) -> None:
        """Preamble and OPEN both ways in the clear; then, unless plain, the TLS handshake."""
        mode = p.M_PLAIN if self.rx.plain else p.M_TLS
        self._send(p.encode_preamble() + p.Open(mode).encode())
        ev = self._next()
        if isinstance(ev, p.Error):
            raise _PeerError(ev)
        assert isinstance(ev, p.Open)
        if ev.mode != mode:
            if self.rx.plain:
                raise ModeError("the sender is encrypted (TLS) and this receiver has --plain; the sender must add "
                                "--plain too", E_MODE)
            raise ModeError("the sender used --plain and this receiver is encrypted (the default); refused: "
                            "start the receiver with --plain too, only on a trusted network", E_MODE)
        if self.rx._ctx is not None:
            self.conn = self.rx._ctx.wrap_socket(self.conn, server_side=True)

    def _run(self) -> None:
        self._open_stream()
        nonce = secrets.token_bytes(p.NONCE_SIZE)
        rx = self.rx
        fp = rx._fp
        welcome = p.Welcome(p.FEATURES, rx.token is not None, nonce).encode()
        pt = p.Transcript()
        pt.add(welcome[p.HEADER_SIZE :])
        self._send(welcome)
        hello = self._next()
        if isinstance(hello, p.Error):
            raise _PeerError(hello)
        assert isinstance(hello, p.Hello)
        mt = p.Transcript()
        mt.add(self.dec.last_payload)
        features = p.FEATURES & hello.features
        ev = self._next()
        if isinstance(ev, p.Error):
            raise _PeerError(ev)
        if rx.token is not None:
            if not isinstance(ev, p.Auth):
                raise AuthError("a token is required and the sender did not authenticate")
            if not p.proof_ok(p.sender_proof(rx.token, hello.nonce, nonce, fp), ev.mac):
                raise AuthError("wrong token (or a man in the middle)")
            self._send(p.AuthOk(p.receiver_proof(rx.token, hello.nonce, nonce, fp)).encode())
            ev = self._next()
        elif isinstance(ev, p.Auth):
            raise AuthError("this receiver has no token, so it cannot check the sender's")
        self.key = p.session_key(rx.token, hello.nonce, nonce, fp)
        need = p.ALGO_FEATURE[hello.algo]
        if need and not features & need:
            raise TransferError(f"checksum {checksum.NAMES[hello.algo]} was not negotiated", E_UNSUPPORTED)
        self.algo = hello.algo
        self.result.checksum = checksum.NAMES[hello.algo]
        self.resume = bool(hello.flags & p.H_RESUME) and bool(features & p.F_RESUME)
        # The manifest streams in; names are checked chunk by chunk, nothing is written before MANIFEST_END.
        tree = names.TreeCheck()
        while True:
            if isinstance(ev, p.Error):
                raise _PeerError(ev)
            if isinstance(ev, p.ManifestEnd):
                break
            assert isinstance(ev, p.Manifest)
            mt.add(self.dec.last_payload)
            if len(self.entries) + len(ev.entries) > MAX_ENTRIES:
                raise TransferError(f"the manifest has more than {MAX_ENTRIES} entries", E_UNSUPPORTED)
            for e in ev.entries:
                if e.is_link and not rx.links:
                    raise UnsafeNameError(f"{e.name.decode('utf-8', 'backslashreplace')} is a symlink: this "
                                          "receiver refuses symlinks unless started with --links")
                if e.is_link and not hello.flags & p.H_LINKS:
                    raise ProtocolError("a symlink entry in a session that did not ask for --links")
                self.parts.append(tree.add(e.name, e.is_dir))
            self.entries += ev.entries
            ev = self._next()
        if not p.proof_ok(p.manifest_mac(self.key, mt.digest(), ev.count), ev.mac):
            raise p.IntegrityError("the manifest failed its integrity check: the stream was altered on the way, or "
                                   "the sender does not hold the session key")
        if ev.count != len(self.entries):
            raise ProtocolError(f"MANIFEST_END says {ev.count} entries; {len(self.entries)} arrived")
        self._plan(pt)
        while True:
            ev = self._next()
            if isinstance(ev, p.Batch):
                self._receive_batch(ev)
            elif isinstance(ev, p.FileStart):
                self._receive(ev)
            elif isinstance(ev, p.Done):
                p.verify(self.key, b"done", ev.signed(), ev.mac, "the sender's DONE")
                if ev.count != self.trailers:
                    raise ProtocolError(f"DONE says {ev.count} files were sent; {self.trailers} arrived")
                self._flush()
                self._finish()
                return
            elif isinstance(ev, p.Error):
                raise _PeerError(ev)
            else:  # the decoder's order table admits nothing else here
                raise ProtocolError(f"unexpected {type(ev).__name__}")

    # -- directories below the root ------------------------------------------------------------------------
    def _dir(self, parts: tuple[bytes, ...], create: bool) -> int | None:
        """fd of directory `parts` below the root, walked one O_NOFOLLOW component at a time; None if it
        does not exist and not `create`. A symlink or non-directory on the way is refused."""
        fd = self.dirs.get(parts)
        if fd is not None:
            return fd
        parent = self._dir(parts[:-1], create)
        if parent is None:
            return None
        name = parts[-1]
        shown = b"/".join(parts).decode("utf-8", "backslashreplace")
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(name, 0o777, dir_fd=parent)  # the umask applies, as for mkdir -p
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeNameError(f"{shown} is a symlink in the target directory; refusing to follow it") from None
            if exc.errno == errno.ENOTDIR:
                raise TransferError(f"{shown} exists and is not a directory", E_EXISTS) from None
            raise
        self.dirs[parts] = fd
        return fd

    # -- manifest → plan (no writes until every check passed) ----------------------------------------------
    def _plan(self, pt: p.Transcript) -> None:
        palgo = checksum.prefix_algorithm(self.algo)
        resume = self.resume
        conflicts: list[str] = []
        plan: list[p.PlanEntry] = []
        links: list[int] = []
        for i, e in enumerate(self.entries):
            self._trim_dirs()
            parts = self.parts[i]
            shown = e.name.decode("utf-8", "backslashreplace")
            parent = self._dir(parts[:-1], create=False)
            st = _lstat(parts[-1], parent)
            if e.is_link:
                if st is None:
                    links.append(i)
                elif stat.S_ISLNK(st.st_mode) and parent is not None and \
                        os.readlink(parts[-1], dir_fd=parent) == e.target:
                    self.result.skipped += 1  # the same link is already there
                elif stat.S_ISDIR(st.st_mode) or not self.rx.overwrite:
                    conflicts.append(shown)
                else:
                    links.append(i)
                plan.append(p.PlanEntry(p.P_NEW))
                continue
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise UnsafeNameError(f"{shown} is a symlink in the target directory; refusing to replace it")
            if e.is_dir:
                if st is not None and not stat.S_ISDIR(st.st_mode):
                    raise TransferError(f"{shown} exists and is not a directory", E_EXISTS)
                plan.append(p.PlanEntry(p.P_NEW))
                continue
            if st is not None:
                if not stat.S_ISREG(st.st_mode):
                    raise TransferError(f"{shown} exists and is not a regular file", E_EXISTS)
                if resume:
                    assert parent is not None
                    with _open_file(parts[-1], parent, os.O_RDONLY) as ch:
                        digest = hashing.digest_read(palgo, ch, st.st_size) or b""
                    plan.append(p.PlanEntry(p.P_EXISTS, st.st_size, digest))
                    continue
                if not self.rx.overwrite:
                    conflicts.append(shown)
            pst = _lstat(names.partial_name(parts[-1]), parent) if resume and e.size > p.SMALL_FILE_MAX else None
            if pst is not None and stat.S_ISREG(pst.st_mode) and pst.st_size > 0:
                assert parent is not None
                with _open_file(names.partial_name(parts[-1]), parent, os.O_RDONLY) as ch:
                    t = time.perf_counter()
                    digest = hashing.digest_mapped(palgo, ch, pst.st_size)
                    self.result.checksum_seconds += time.perf_counter() - t
                plan.append(p.PlanEntry(p.P_PARTIAL, pst.st_size, digest))
            else:
                # Small files are always resent whole in a BATCH (a leftover partial is simply rewritten).
                plan.append(p.PlanEntry(p.P_NEW))
        if conflicts:
            more = f" and {len(conflicts) - 1} more" if len(conflicts) > 1 else ""
            raise TransferError(f"{conflicts[0]}{more} already exist (the receiver needs --overwrite, "
                                "or resend with --resume to skip identical files)", E_EXISTS)
        # Every check passed: now create the directories (empty ones included).
        for i, e in enumerate(self.entries):
            if e.is_dir:
                self._trim_dirs()
                self._dir(self.parts[i], create=True)
                self.result.dirs += 1
        self.plan = plan
        for i in range(0, len(plan), p.CHUNK_ENTRIES):
            frame = p.Plan(tuple(plan[i : i + p.CHUNK_ENTRIES])).encode()
            pt.add(frame[p.HEADER_SIZE :])
            self._send(frame)
        self._send(p.PlanEnd(self.rx.overwrite, len(plan),
                             p.plan_mac(self.key, pt.digest(), self.rx.overwrite, len(plan))).encode())
        for i in links:
            self._link(i)

    def _link(self, index: int) -> None:
        """A symlink entry: made under its partial name with the sender's mtime, published with the next batch."""
        e = self.entries[index]
        assert e.target is not None
        parts = self.parts[index]
        parent = self._dir(parts[:-1], create=True)
        assert parent is not None
        partial = names.partial_name(parts[-1])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial, dir_fd=parent)
        os.symlink(e.target, partial, dir_fd=parent)
        os.utime(partial, ns=(e.mtime_ns, e.mtime_ns), dir_fd=parent, follow_symlinks=False)
        self._queue(_Pending(-1, parent, partial, parts[-1], e, None), 0)

    # -- small files, many per BATCH frame -----------------------------------------------------------------
    def _claim(self, index: int) -> p.Entry:
        if index >= len(self.entries) or not self.entries[index].is_file or index in self.received:
            raise ProtocolError(f"a body for entry {index}, which is not a file awaiting its body")
        self.received.add(index)
        self.trailers += 1
        return self.entries[index]

    def _receive_batch(self, b: p.Batch) -> None:
        p.verify(self.key, b"batch", b.signed, b.mac, "a BATCH frame")
        res = self.result
        algo = self.algo
        dsize = checksum.DIGEST_SIZE[algo]
        digest_of = checksum.digest_of
        for it in b.items:
            index = it.index
            e = self._claim(index)
            if it.status == p.S_SOURCE_CHANGED:
                self._failed(index, E_SOURCE_CHANGED, f"{_shown(e)} changed on the sender while being sent")
                continue
            size = e.size
            if len(it.body) != size or size > p.SMALL_FILE_MAX or len(it.digest) != dsize:
                raise ProtocolError(f"BATCH item for entry {index} does not match the manifest")
            t = time.perf_counter()
            good = digest_of(algo, it.body) == it.digest
            res.checksum_seconds += time.perf_counter() - t
            res.bytes += size
            res.user_bytes += 2 * size  # recv_into the frame, pwrite the file: two crossings, as readwrite
            res.routes["readwrite"] = res.routes.get("readwrite", 0) + size
            if not good:
                self._failed(index, E_CHECKSUM, f"{_shown(e)}: checksum mismatch, not published")
                continue
            parts = self.parts[index]
            parent = self.dirs.get(parts[:-1]) or self._dir(parts[:-1], create=True)
            assert parent is not None
            partial = names.partial_name(parts[-1])
            fd = _create_locked(partial, parent, _shown(e))
            try:
                if size:
                    done = os.pwrite(fd, it.body, 0)
                    while done < size:
                        done += os.pwrite(fd, it.body[done:], done)
                os.fchmod(fd, e.mode & _MODE_MASK)
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise TransferError(f"no space left writing {_shown(e)}; nothing unverified was published",
                                        E_NOSPACE) from None
                raise
            res.batched_files += 1
            self._queue(_Pending(index, parent, partial, parts[-1], e, None, fd), size)

    def _lock_partial(self, partial: bytes, parent: int, shown: str) -> FileChannel:
        ch = _open_file(partial, parent, os.O_RDWR | os.O_CREAT)
        # Two receivers on one DIR must not interleave writes into the same partial: an OFD lock, held
        # until this file is renamed (and released by the kernel if we are killed).
        if ch.try_lock() is None:
            ch.close()
            raise TransferError(f"{shown} is being received by another session", E_EXISTS)
        return ch

    # -- one large file: FILE + body + TRAILER -------------------------------------------------------------
    def _receive(self, fs: p.FileStart) -> None:
        e = self._claim(fs.index)
        pe = self.plan[fs.index]
        allowed = {0, pe.have} if pe.state == p.P_PARTIAL else {0}
        if fs.offset not in allowed or fs.offset + fs.length > e.size:
            raise ProtocolError(f"FILE frame for entry {fs.index} does not match the manifest and plan")
        parts = self.parts[fs.index]
        shown = _shown(e)
        parent = self._dir(parts[:-1], create=True)
        assert parent is not None
        partial = names.partial_name(parts[-1])
        res = self.result
        ch = self._lock_partial(partial, parent, shown)
        queued = False
        try:
            ch.truncate(fs.offset)
            way = self._way(ch)
            hasher: checksum.Hasher | None = None
            if way != "splice":
                # The bytes pass through a user buffer: hash them there, while hot; the prefix kept from an
                # earlier session is hashed first, from the file.
                hasher = checksum.new_hasher(self.algo)
                if fs.offset:
                    hashing.update_read(hasher, ch, 0, fs.offset)
            pos = self._body(ch, fs.offset, e.size, shown, hasher, way)
            trailer = self._next()
            if not isinstance(trailer, p.Trailer) or trailer.index != fs.index:
                raise ProtocolError(f"expected the TRAILER of entry {fs.index}")
            p.verify(self.key, b"trailer", trailer.signed(), trailer.mac, f"the TRAILER of {shown}")
            if pos != e.size or trailer.status == p.S_SOURCE_CHANGED:
                # The body was padded to its announced length; these bytes are not the file.
                os.unlink(partial, dir_fd=parent)
                self._failed(fs.index, E_SOURCE_CHANGED, f"{shown} changed on the sender while being sent")
                return
            if len(trailer.digest) != checksum.DIGEST_SIZE[self.algo]:
                raise ProtocolError(f"TRAILER digest of {len(trailer.digest)} bytes for {self.result.checksum}")
            os.fchmod(ch.fileno(), e.mode & _MODE_MASK)
            os.utime(ch.fileno(), ns=(e.mtime_ns, e.mtime_ns))
            t = time.perf_counter()
            digest = hasher.digest() if hasher is not None else hashing.digest_mapped(self.algo, ch, e.size)
            res.checksum_seconds += time.perf_counter() - t
            if digest != trailer.digest:
                os.unlink(partial, dir_fd=parent)
                self._failed(fs.index, E_CHECKSUM, f"{shown}: checksum mismatch, not published")
                return
            self._queue(_Pending(fs.index, parent, partial, parts[-1], e, ch), e.size)
            queued = True
        finally:
            if not queued:
                ch.close()

    def _way(self, ch: FileChannel) -> str:
        """How a large body lands: "direct" (O_DIRECT from the received buffer, hashed there; the default where
        the file system does direct I/O), "splice" (plain --cache, or a forced --route: zero-copy into the page
        cache, hashed over a mapping afterwards), or "copy" (TLS --cache, or no direct I/O here: recv_into +
        pwrite through the page cache, hashed in the buffer)."""
        if self.rx.route is not None:
            return "splice" if self.rx.plain else "copy"
        if not self.rx.cache and _sys.HAS_O_DIRECT and page_cache_fs(ch.fileno()) is None \
                and dio_alignment(ch.fileno()).offset:
            return "direct"
        return "splice" if self.rx.plain else "copy"

    def _body(self, ch: FileChannel, pos: int, size: int, shown: str, hasher: checksum.Hasher | None,
              way: str) -> int:
        """Land the FILE body at `pos`; returns the end position."""
        res = self.result
        while self.dec.buffered and self.dec.body_remaining:  # never happens with exact reads; kept correct
            ev = self.dec.next_event()
            assert isinstance(ev, p.BodyData)
            if hasher is not None:
                hasher.update(ev.data)
            pos += ch.write(ev.data, pos)
            res.user_bytes += len(ev.data)
        try:
            if way == "direct" and not self.rx.plain:
                return self._tls_direct(ch, pos, size, shown, hasher)
            while self.dec.body_remaining:
                n = self._step(ch, pos, way, hasher)
                self.dec.skip_body(n)
                pos += n
                if n == 0:
                    raise ConnectionDropped(f"the sender went away during {shown}: {pos} of {size} bytes "
                                            "kept for --resume")
        except OSError as exc:
            n = getattr(exc, "bytes_moved", 0)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise TransferError(f"no space left writing {shown}: {pos + n} of {size} bytes kept "
                                    "for --resume", E_NOSPACE) from None
            raise
        return pos

    def _step(self, ch: FileChannel, pos: int, way: str, hasher: checksum.Hasher | None) -> int:
        res = self.result
        if way != "copy":  # plain: splice, or the direct route with the hash computed in its buffer
            hook = hasher.update if hasher is not None else None
            ch.direct = way == "direct"  # a direct channel asks routes.move for the direct route first
            try:
                n = ch.transfer_from(self.conn, pos, self.dec.body_remaining, route=self.rx.route, on_chunk=hook)
            except OSError as exc:
                self._count(ch, getattr(exc, "bytes_moved", 0))
                raise
            self._count(ch, n)
            return n
        assert hasher is not None
        view = memoryview(self.buf)
        n = self.conn.recv_into(view, min(len(view), self.dec.body_remaining))
        if n:
            hasher.update(view[:n])
            done = 0
            while done < n:
                done += ch.write(view[done:n], pos + done)
            res.routes["readwrite"] = res.routes.get("readwrite", 0) + n
            res.bytes += n
            res.user_bytes += 2 * n  # decrypted into the buffer, written from it
        return n

    def _tls_direct(self, ch: FileChannel, pos: int, size: int, shown: str, hasher: checksum.Hasher | None) -> int:
        """TLS into an aligned buffer (decrypted there: the one CPU copy), hashed there, written with O_DIRECT:
        the page cache never holds the file. Unaligned heads and the short tail go through the page cache."""
        assert hasher is not None
        if self.dbuf is None:
            self.dbuf = aligned_buffer(direct_route.CHUNK)
        buf = self.dbuf
        fd = ch.fileno()
        align = dio_alignment(fd).offset
        flags = fcntl.fcntl(fd, fcntl.F_GETFL) & ~_sys.O_DIRECT
        res = self.result
        direct = True
        try:
            while self.dec.body_remaining:
                mis = pos % align
                want = min(self.dec.body_remaining, align - mis if mis else len(buf))
                got = 0
                while got < want:
                    n = self.conn.recv_into(buf[got:want], want - got)
                    if n == 0:
                        break
                    got += n
                if got:
                    hasher.update(buf[:got])
                    whole = 0 if mis else got // align * align
                    if whole and direct:
                        try:
                            fcntl.fcntl(fd, fcntl.F_SETFL, flags | _sys.O_DIRECT)
                            try:
                                _pwrite_all(fd, buf[:whole], pos)
                            finally:
                                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
                        except OSError as exc:
                            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                                raise
                            # The file system refused O_DIRECT after all (its reported alignment was a guess):
                            # the rest of this file goes through the page cache, and the route says so.
                            direct = False
                    if whole and not direct:
                        _pwrite_all(fd, buf[:whole], pos)  # (again, if a refused direct write got partway)
                    if got > whole:
                        _pwrite_all(fd, buf[whole:got], pos + whole)
                    route = "direct" if direct else "readwrite"
                    res.routes[route] = res.routes.get(route, 0) + got
                    res.bytes += got
                    res.user_bytes += 2 * got  # in (decrypted) and out (by DMA or write) of user space
                    self.dec.skip_body(got)
                    pos += got
                if got < want:
                    raise ConnectionDropped(f"the sender went away during {shown}: {pos} of {size} bytes "
                                            "kept for --resume")
        except OSError as exc:
            exc.bytes_moved = 0  # type: ignore[attr-defined]  # pos already counts what landed
            raise
        return pos

    def _count(self, ch: FileChannel, n: int) -> None:
        if n:
            route = ch.last_route or "unknown"
            self.result.routes[route] = self.result.routes.get(route, 0) + n
            self.result.bytes += n
            if route in routes.COPY_MODELS:  # bytes a copying fallback (or a forced readwrite) carried by hand
                self.result.user_bytes += n * routes.copy_model(route, "socket", "file").user_crossings

    # -- batched durability --------------------------------------------------------------------------------
    def _queue(self, item: _Pending, nbytes: int) -> None:
        self.publish.append(item)
        self.publish_bytes += nbytes
        if (len(self.publish) >= self.rx.publish_files or self.publish_bytes >= PUBLISH_BYTES
                or len(self.publish) + len(self.dirs) >= self.rx.fd_budget):
            self._flush()

    def _sync(self, fds: dict[int, int]) -> None:
        """Make everything written so far durable: one syncfs per file system touched (`fds`: st_dev → a
        directory fd on it), or, without syncfs, an fdatasync per queued file."""
        if durable.HAS_SYNCFS:
            for fd in fds.values():
                durable.syncfs(fd)
        else:
            for item in self.publish:
                if item.ch is not None or item.fd >= 0:
                    os.fdatasync(item.ch.fileno() if item.ch is not None else item.fd)
        self.result.syncs += 1

    def _devices(self, parents: list[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for fd in parents:
            out.setdefault(os.fstat(fd).st_dev, fd)
        return out

    def _flush(self) -> None:
        """Publish the queue: sync once, rename each partial, fsync each touched directory once, ACK the lot."""
        if self.publish:
            batch = self.publish
            parents = list(dict.fromkeys(item.parent for item in batch))
            self._sync(self._devices(parents))
            try:
                while self.publish:
                    item = self.publish[0]
                    self._publish(item)
                    item.close()
                    self.publish.pop(0)
                    if item.index >= 0:
                        self.acks.append(p.AckItem(item.index, p.S_OK))
                        self.result.files += 1
                    else:
                        self.result.links += 1
            finally:
                for fd in parents:
                    os.fsync(fd)
            self.publish_bytes = 0
        while self.acks:
            self._send(p.Ack.build(self.key, self.acks[: p.MAX_ACK_ITEMS]))
            del self.acks[: p.MAX_ACK_ITEMS]
        self._trim_dirs()

    def _trim_dirs(self) -> None:
        """A tree of many directories: close the cached directory fds (but the root's) once they reach half the
        descriptor budget. Only called where nothing queued refers to them; _dir() walks again (O_NOFOLLOW,
        component by component) when one is needed."""
        if len(self.dirs) <= self.rx.fd_budget // 2 or self.publish:
            return
        for parts, fd in list(self.dirs.items()):
            if parts:
                os.close(fd)
                del self.dirs[parts]

    def _publish(self, item: _Pending) -> None:
        partial, final, parent = item.partial, item.final, item.parent
        if self.rx.overwrite:
            os.rename(partial, final, src_dir_fd=parent, dst_dir_fd=parent)
            return
        # Never replace a file that appeared since the plan was made: rename with RENAME_NOREPLACE, or link +
        # unlink where the file system lacks it (link fails with EEXIST; rename would silently clobber).
        try:
            if durable.rename_noreplace(partial, final, parent):
                return
            os.link(partial, final, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise TransferError(f"{_shown(item.entry)} appeared on the receiver during the session; not overwritten",
                                E_EXISTS) from None
        os.unlink(partial, dir_fd=parent)

    def _failed(self, index: int, code: int, message: str) -> None:
        self.result.failed.append({"name": self.entries[index].name.decode("utf-8", "backslashreplace"),
                                   "code": code, "error": message})
        self.acks.append(p.AckItem(index, p.S_FAILED, code, message))

    def _finish(self) -> None:
        res = self.result
        for i, e in enumerate(self.entries):
            if not e.is_file or i in self.received:
                continue
            # Skipped as already identical. A partial may linger if we were killed between publishing it
            # (link) and removing its old name (unlink): its bytes are the final file's, so drop it.
            res.skipped += 1
            parts = self.parts[i]
            parent = self._dir(parts[:-1], create=False)
            if parent is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(names.partial_name(parts[-1]), dir_fd=parent)
        # Directory modes and mtimes last (after every unlink above), deepest first: adding files changed them.
        # Then one syncfs per file system for all of them (an fd per device kept aside), or an fsync each.
        root = self.dirs[()]
        devices = {os.fstat(root).st_dev: os.dup(root)}
        try:
            for i in range(len(self.entries) - 1, -1, -1):
                e = self.entries[i]
                if e.is_dir:
                    self._trim_dirs()
                    fd = self._dir(self.parts[i], create=True)
                    assert fd is not None
                    os.fchmod(fd, e.mode & _MODE_MASK)
                    os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
                    if not durable.HAS_SYNCFS:
                        os.fsync(fd)
                    elif (dev := os.fstat(fd).st_dev) not in devices:
                        devices[dev] = os.dup(fd)
            if durable.HAS_SYNCFS:
                for fd in devices.values():
                    durable.syncfs(fd)
            else:
                os.fsync(root)
        finally:
            for fd in devices.values():
                os.close(fd)
        self._send(p.Bye.build(self.key, {
            "files": res.files, "bytes": res.bytes, "routes": res.routes, "user_bytes": res.user_bytes,
            "checksum": res.checksum, "checksum_seconds": round(res.checksum_seconds, 6),
            "failed": len(res.failed), "encryption": res.encryption, "batched_files": res.batched_files,
            "syncs": res.syncs, "links": res.links}))


class _PeerError(TransferError):
    """The sender ended the session with an ERROR frame: nothing to reply."""

    def __init__(self, ev: p.Error) -> None:
        super().__init__(f"sender: {ERROR_NAMES.get(ev.code, 'error')}: {ev.message}", ev.code)


def _lstat(name: bytes, parent: int | None) -> os.stat_result | None:
    if parent is None:
        return None
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_file(name: bytes, parent: int, flags: int) -> FileChannel:
    # 0600 while incomplete: nobody else reads a file we have not verified. O_NOFOLLOW: never through a symlink.
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
    return FileChannel(fd, own=True, name=os.fsdecode(name))


__all__ = ["ConnectionDropped", "Receiver", "SessionResult"]
