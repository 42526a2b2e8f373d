"""Receiver glue for `zcopy recv`: listens, runs one session at a time, and lands each file safely.

Bodies move socket → pipe → partial file with FileChannel.transfer_from (route splice: never in user space).
A file reaches its final name only after fsync, a whole-file digest over an mmap view, and an atomic rename
followed by an fsync of its directory. Every path is walked with dir_fd + O_NOFOLLOW below the target root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import TracebackType

from zcopy import FileChannel, RouteUnavailable, routes
from zcopy.transfer import checksum, hashing, names
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import (
    E_CHECKSUM,
    E_EXISTS,
    E_INTERNAL,
    E_IO,
    E_NOSPACE,
    E_SOURCE_CHANGED,
    E_UNSUPPORTED,
    ERROR_NAMES,
    AuthError,
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


class ConnectionDropped(TransferError):
    """The sender went away in the middle of the session; partial files are kept for --resume."""

    code = E_IO


@dataclass
class SessionResult:
    """One session as the receiver saw it: `routes` maps route names to body bytes they moved."""

    peer: str = ""
    files: int = 0
    dirs: int = 0
    skipped: int = 0
    bytes: int = 0
    user_bytes: int = 0
    failed: list[dict[str, object]] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)
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
    partial file. `token` turns on HMAC challenge-response authentication; `overwrite` allows replacing
    existing files. `route` forces the body route (e.g. "readwrite", a plain recv_into + pwrite, to compare);
    by default splice, with any fallback visible in each session's `routes`.
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
    ) -> None:
        routes.require(route, "socket", "file")
        self.route = route
        self.directory = os.fspath(directory)
        self.token = token.encode() if isinstance(token, str) else token
        self.overwrite = overwrite
        self.timeout = timeout
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


class _Session:
    def __init__(self, receiver: Receiver, conn: socket.socket) -> None:
        self.rx = receiver
        self.conn = conn
        self.dec = p.Decoder("sender")
        self.buf = bytearray(1 << 16)
        self.result = SessionResult()
        self.dirs: dict[tuple[bytes, ...], int] = {(): receiver._root}
        self.entries: tuple[p.Entry, ...] = ()
        self.plan: list[p.PlanEntry] = []
        self.algo = checksum.NONE
        self.received: set[int] = set()

    def close(self) -> None:
        for parts, fd in self.dirs.items():
            if parts:
                os.close(fd)
        self.dirs = {}

    # -- stream --------------------------------------------------------------------------------------------
    def _next(self) -> p.Event:
        """Next event from the sender. Reads exactly what the decoder asks for, so body bytes stay in the
        socket for splice."""
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
        except TransferError as exc:
            self._refuse(exc.code, str(exc), reply=not isinstance(exc, _PeerError))
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
        with contextlib.suppress(OSError):
            self._send(p.Error(code, message).encode())
            self.conn.shutdown(socket.SHUT_WR)
            self.conn.settimeout(LINGER_S)
            deadline = time.monotonic() + LINGER_S
            while time.monotonic() < deadline and self.conn.recv_into(self.buf):
                pass

    def _run(self) -> None:
        nonce = secrets.token_bytes(p.NONCE_SIZE)
        rx = self.rx
        self._send(p.encode_preamble() + p.Welcome(p.FEATURES, rx.token is not None, nonce).encode())
        hello = self._next()
        if isinstance(hello, p.Error):
            raise _PeerError(hello)
        assert isinstance(hello, p.Hello)
        features = p.FEATURES & hello.features
        ev = self._next()
        if isinstance(ev, p.Error):
            raise _PeerError(ev)
        if rx.token is not None:
            if not isinstance(ev, p.Auth):
                raise AuthError("a token is required and the sender did not authenticate")
            if not p.proof_ok(p.sender_proof(rx.token, hello.nonce, nonce), ev.mac):
                raise AuthError("wrong token")
            self._send(p.AuthOk(p.receiver_proof(rx.token, hello.nonce, nonce)).encode())
            ev = self._next()
        elif isinstance(ev, p.Auth):
            raise AuthError("this receiver has no token, so it cannot check the sender's")
        if isinstance(ev, p.Error):
            raise _PeerError(ev)
        assert isinstance(ev, p.Manifest)
        self._manifest(ev, features)
        while True:
            ev = self._next()
            if isinstance(ev, p.FileStart):
                self._receive(ev)
            elif isinstance(ev, p.Done):
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
        if parts in self.dirs:
            return self.dirs[parts]
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
    def _manifest(self, m: p.Manifest, features: int) -> None:
        need = p.ALGO_FEATURE[m.algo]
        if need and not features & need:
            raise TransferError(f"checksum {checksum.NAMES[m.algo]} was not negotiated", E_UNSUPPORTED)
        resume = m.resume and bool(features & p.F_RESUME)
        names.check_tree((e.name, e.is_dir) for e in m.entries)
        self.entries = m.entries
        self.algo = m.algo
        self.result.checksum = checksum.NAMES[m.algo]
        palgo = checksum.prefix_algorithm(m.algo)
        conflicts: list[str] = []
        plan: list[p.PlanEntry] = []
        for e in m.entries:
            parts = names.split_name(e.name)
            shown = e.name.decode("utf-8", "backslashreplace")
            parent = self._dir(parts[:-1], create=False)
            st = _lstat(parts[-1], parent)
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
            pst = _lstat(names.partial_name(parts[-1]), parent) if resume else None
            if pst is not None and stat.S_ISREG(pst.st_mode) and pst.st_size > 0:
                assert parent is not None
                with _open_file(names.partial_name(parts[-1]), parent, os.O_RDONLY) as ch:
                    t = time.perf_counter()
                    digest = hashing.digest_mapped(palgo, ch, pst.st_size)
                    self.result.checksum_seconds += time.perf_counter() - t
                plan.append(p.PlanEntry(p.P_PARTIAL, pst.st_size, digest))
            else:
                plan.append(p.PlanEntry(p.P_NEW))
        if conflicts:
            more = f" and {len(conflicts) - 1} more" if len(conflicts) > 1 else ""
            raise TransferError(f"{conflicts[0]}{more} already exist (the receiver needs --overwrite, "
                                "or resend with --resume to skip identical files)", E_EXISTS)
        # Every check passed: now create the directories (empty ones included).
        for e in m.entries:
            if e.is_dir:
                self._dir(names.split_name(e.name), create=True)
                self.result.dirs += 1
        self.plan = plan
        self._send(p.Plan(self.rx.overwrite, tuple(plan)).encode())

    # -- one file ------------------------------------------------------------------------------------------
    def _receive(self, fs: p.FileStart) -> None:
        if fs.index >= len(self.entries) or self.entries[fs.index].is_dir or fs.index in self.received:
            raise ProtocolError(f"FILE frame for entry {fs.index}, which is not a file awaiting its body")
        e = self.entries[fs.index]
        pe = self.plan[fs.index]
        allowed = {0, pe.have} if pe.state == p.P_PARTIAL else {0}
        if fs.offset not in allowed or fs.offset + fs.length > e.size:
            raise ProtocolError(f"FILE frame for entry {fs.index} does not match the manifest and plan")
        self.received.add(fs.index)
        parts = names.split_name(e.name)
        shown = e.name.decode("utf-8", "backslashreplace")
        parent = self._dir(parts[:-1], create=True)
        assert parent is not None
        partial = names.partial_name(parts[-1])
        res = self.result
        with _open_file(partial, parent, os.O_RDWR | os.O_CREAT) as ch:
            # Two receivers on one DIR must not interleave writes into the same partial: an OFD lock, held
            # until this file is closed (and released by the kernel if we are killed).
            if ch.try_lock() is None:
                raise TransferError(f"{shown} is being received by another session", E_EXISTS)
            ch.truncate(fs.offset)
            pos = fs.offset
            while self.dec.buffered and self.dec.body_remaining:  # never happens with exact reads; kept correct
                ev = self.dec.next_event()
                assert isinstance(ev, p.BodyData)
                pos += ch.write(ev.data, pos)
                res.user_bytes += len(ev.data)
            while self.dec.body_remaining:
                try:
                    n = ch.transfer_from(self.conn, pos, self.dec.body_remaining, route=self.rx.route)
                except OSError as exc:
                    n = getattr(exc, "bytes_moved", 0)
                    self._count(ch, n)
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise TransferError(f"no space left writing {shown}: {pos + n} of {e.size} bytes kept "
                                            "for --resume", E_NOSPACE) from None
                    raise
                self._count(ch, n)
                self.dec.skip_body(n)
                pos += n
                if n == 0:
                    raise ConnectionDropped(f"the sender went away during {shown}: {pos} of {e.size} bytes "
                                            "kept for --resume")
            trailer = self._next()
            if not isinstance(trailer, p.Trailer) or trailer.index != fs.index:
                raise ProtocolError(f"expected the TRAILER of entry {fs.index}")
            if pos != e.size or trailer.status == p.S_SOURCE_CHANGED:
                # The body was padded to its announced length; these bytes are not the file.
                os.unlink(partial, dir_fd=parent)
                self._failed(fs.index, E_SOURCE_CHANGED, f"{shown} changed on the sender while being sent")
                return
            if len(trailer.digest) != checksum.DIGEST_SIZE[self.algo]:
                raise ProtocolError(f"TRAILER digest of {len(trailer.digest)} bytes for {self.result.checksum}")
            os.fchmod(ch.fileno(), e.mode & _MODE_MASK)
            os.utime(ch.fileno(), ns=(e.mtime_ns, e.mtime_ns))
            ch.force(metadata=True)
            t = time.perf_counter()
            digest = hashing.digest_mapped(self.algo, ch, e.size)
            res.checksum_seconds += time.perf_counter() - t
        if digest != trailer.digest:
            os.unlink(partial, dir_fd=parent)
            self._failed(fs.index, E_CHECKSUM, f"{shown}: checksum mismatch, not published")
            return
        self._publish(partial, parts[-1], parent, shown)
        os.fsync(parent)
        res.files += 1
        self._send(p.Ack(fs.index, p.S_OK).encode())

    def _count(self, ch: FileChannel, n: int) -> None:
        if n:
            route = ch.last_route or "unknown"
            self.result.routes[route] = self.result.routes.get(route, 0) + n
            self.result.bytes += n
            if route in routes.COPY_MODELS:  # bytes a copying fallback (or a forced readwrite) carried by hand
                self.result.user_bytes += n * routes.copy_model(route, "socket", "file").user_crossings

    def _publish(self, partial: bytes, final: bytes, parent: int, shown: str) -> None:
        if self.rx.overwrite:
            os.rename(partial, final, src_dir_fd=parent, dst_dir_fd=parent)
            return
        # link + unlink instead of rename: link fails with EEXIST rather than replace a file that appeared
        # since the plan was made (rename would silently clobber it).
        try:
            os.link(partial, final, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise TransferError(f"{shown} appeared on the receiver during the session; not overwritten",
                                E_EXISTS) from None
        os.unlink(partial, dir_fd=parent)

    def _failed(self, index: int, code: int, message: str) -> None:
        self.result.failed.append({"name": self.entries[index].name.decode("utf-8", "backslashreplace"),
                                   "code": code, "error": message})
        self._send(p.Ack(index, p.S_FAILED, code, message).encode())

    def _finish(self) -> None:
        res = self.result
        for i, e in enumerate(self.entries):
            if e.is_dir or i in self.received:
                continue
            # Skipped as already identical. A partial may linger if we were killed between publishing it
            # (link) and removing its old name (unlink): its bytes are the final file's, so drop it.
            res.skipped += 1
            parts = names.split_name(e.name)
            parent = self._dir(parts[:-1], create=False)
            if parent is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(names.partial_name(parts[-1]), dir_fd=parent)
        # Directory modes and mtimes last (after every unlink above), deepest first: adding files changed them.
        for e in reversed(self.entries):
            if e.is_dir:
                fd = self._dir(names.split_name(e.name), create=True)
                assert fd is not None
                os.fchmod(fd, e.mode & _MODE_MASK)
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
                os.fsync(fd)
        os.fsync(self.dirs[()])
        self._send(p.Bye({"files": res.files, "bytes": res.bytes, "routes": res.routes,
                          "user_bytes": res.user_bytes, "checksum": res.checksum,
                          "checksum_seconds": round(res.checksum_seconds, 6),
                          "failed": len(res.failed)}).encode())


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
