"""Channels in the shape of Java NIO: FileChannel (positional I/O, force, locks, map, transfer_to/transfer_from)
and SocketChannel. A channel owns an fd number and sets it to -1 on close, so use-after-close is an error,
never an operation on some other file that reused the number.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from zcopy import _sys, routes
from zcopy import observe as _observe
from zcopy.errors import (
    ClosedChannelError,
    NonReadableChannelError,
    NonWritableChannelError,
    OverlappingFileLockError,
)

if TYPE_CHECKING:
    from zcopy.mapped import MapMode, MappedBuffer

Buffer = bytes | bytearray | memoryview


class HasFileno(Protocol):
    def fileno(self) -> int: ...


Endpoint = int | HasFileno

# Python mode string (without 'b') → open(2) flags. 't' (text) makes no sense for a channel of bytes.
_MODES: dict[str, int] = {
    "r": os.O_RDONLY,
    "r+": os.O_RDWR,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "x+": os.O_RDWR | os.O_CREAT | os.O_EXCL,
}


def parse_mode(mode: str) -> int:
    """Python's open() mode letters → os.open flags (O_CLOEXEC always)."""
    m = mode.replace("b", "")
    if "+" in m:
        m = m.replace("+", "") + "+"
    if m not in _MODES or len(set(mode)) != len(mode):  # like open(): no letter twice ("r++", "rbb")
        raise ValueError(f"invalid mode {mode!r}: use r, r+, w, w+, a, a+, x or x+ (optionally with b)")
    return _MODES[m] | os.O_CLOEXEC


def fd_of(obj: Endpoint) -> int:
    """The fd behind an int, a channel, a socket or a file object (flushing a buffered file object first)."""
    if isinstance(obj, int):
        return obj
    flush = getattr(obj, "flush", None)
    if callable(flush):
        flush()
    return obj.fileno()


# writev(2) takes at most IOV_MAX buffers per call (1024 on Linux).
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024

_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux: short type, short whence, off_t start, off_t len, pid_t pid


def _overlap(a_pos: int, a_size: int, b_pos: int, b_size: int) -> bool:
    """Do byte ranges [pos, pos+size) overlap? size 0 runs to the end of the file, however far it grows."""
    a_end = a_pos + a_size if a_size else None
    b_end = b_pos + b_size if b_size else None
    return (b_end is None or a_pos < b_end) and (a_end is None or b_pos < a_end)


class FileLock:
    """A byte-range lock on a FileChannel (OFD lock on Linux: owned by the open file, not by the process)."""

    def __init__(self, channel: FileChannel, position: int, size: int, shared: bool) -> None:
        self.channel = channel
        self.position = position
        self.size = size
        self.shared = shared
        self._valid = True

    @property
    def valid(self) -> bool:
        return self._valid and not self.channel.closed

    def release(self) -> None:
        if self.valid:
            self.channel._fcntl_lock(fcntl.F_UNLCK, self.position, self.size, wait=False)
        self._valid = False

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        kind = "shared" if self.shared else "exclusive"
        return f"<FileLock {kind} {self.position}+{self.size or 'EOF'} valid={self.valid}>"


class FileChannel:
    """A file as a channel: the article's `FileChannel`, with Linux's zero-copy routes behind transfer_*."""

    def __init__(self, fd_or_file: int | HasFileno, *, own: bool = False, name: str | None = None) -> None:
        self._file: object | None = None if isinstance(fd_or_file, int) else fd_or_file
        self._fd = fd_of(fd_or_file)
        self._own = own
        self.name = name or str(getattr(fd_or_file, "name", f"fd:{self._fd}"))
        acc = fcntl.fcntl(self._fd, fcntl.F_GETFL) & os.O_ACCMODE
        self._readable = acc in (os.O_RDONLY, os.O_RDWR)
        self._writable = acc in (os.O_WRONLY, os.O_RDWR)
        # Opened with O_DIRECT (Java's ExtendedOpenOption.DIRECT): transfers prefer the direct route.
        self.direct = bool(_sys.O_DIRECT) and bool(fcntl.fcntl(self._fd, fcntl.F_GETFL) & _sys.O_DIRECT)
        self.last_route: str | None = None
        self.last_move: routes.Moved | None = None
        self._locks: list[FileLock] = []

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], mode: str = "r", *, perms: int = 0o666, direct: bool = False
    ) -> FileChannel:
        """Open a file as a channel. direct=True opens it with O_DIRECT (Java's ExtendedOpenOption.DIRECT): the
        channel's own reads and writes then need buffers from `zcopy.aligned_buffer` and offsets and lengths
        aligned to `zcopy.aligned.dio_alignment(ch.fileno()).offset` (the kernel answers EINVAL otherwise), and its
        transfers go by the direct route first. A file system without O_DIRECT raises OSError(EINVAL)."""
        flags = parse_mode(mode)
        if direct:
            if not _sys.HAS_O_DIRECT:
                raise OSError(errno.EINVAL, "O_DIRECT is not available on this platform", os.fspath(path))
            flags |= _sys.O_DIRECT
        try:
            fd = os.open(path, flags, perms)
        except OSError as exc:
            if direct and exc.errno == errno.EINVAL:
                raise OSError(errno.EINVAL, "this file system does not support O_DIRECT", os.fspath(path)) from None
            raise
        return cls(fd, own=True, name=os.fspath(path))

    # -- state -------------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        return self._check()

    def _check(self) -> int:
        if self._fd < 0:
            raise ClosedChannelError(f"channel {self.name} is closed")
        return self._fd

    def _check_read(self) -> int:
        fd = self._check()
        if not self._readable:
            raise NonReadableChannelError(f"channel {self.name} was not opened for reading")
        return fd

    def _check_write(self) -> int:
        fd = self._check()
        if not self._writable:
            raise NonWritableChannelError(f"channel {self.name} was not opened for writing")
        return fd

    @property
    def readable(self) -> bool:
        return self._readable

    @property
    def writable(self) -> bool:
        return self._writable

    def close(self) -> None:
        if self._fd >= 0 and not self._own:
            # The fd (and the OFD locks on it) outlive a channel that does not own it; closing a channel
            # releases its locks (Java), so unlock them here or they would stay held, reported invalid.
            for lk in self._locks:
                lk.release()
        self._locks.clear()
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._own:
            if self._file is not None:
                close = getattr(self._file, "close", None)
                if callable(close):
                    close()
                    return
            os.close(fd)

    def __enter__(self) -> FileChannel:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<FileChannel {self.name!r} {state}>"

    # -- position and size -------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        return os.lseek(self._check(), 0, os.SEEK_CUR)

    @position.setter
    def position(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"position must be >= 0, got {value}")
        os.lseek(self._check(), value, os.SEEK_SET)

    def size(self) -> int:
        return os.fstat(self._check()).st_size

    def truncate(self, size: int) -> FileChannel:
        """Java semantics: shrink to `size` if larger (never grows); the position is clamped to the new size."""
        fd = self._check_write()
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if size < self.size():
            os.ftruncate(fd, size)
        if self.position > size:
            self.position = size
        return self

    # -- reading -----------------------------------------------------------------------------------------
    def readinto(self, buf: bytearray | memoryview, position: int | None = None) -> int:
        """One read into buf (at `position` without moving the channel's position); 0 at end of file."""
        return self.readv([buf], position)

    def readv(self, buffers: Sequence[bytearray | memoryview], position: int | None = None) -> int:
        fd = self._check_read()
        pending = _observe.begin()
        try:
            if position is None:
                n = os.readv(fd, buffers)
            else:
                if position < 0:
                    raise ValueError(f"position must be >= 0, got {position}")
                n = os.preadv(fd, buffers, position)
        except OSError as exc:
            raise self._unaligned(exc) from None
        if pending is not None:
            # On a direct channel the disk DMAs into the buffer: no CPU copy.
            pending.end("read", "direct" if self.direct else "readwrite", n,
                        {"readv" if position is None else "preadv2": 1}, 0 if self.direct else n)  # fmt: skip
        return n

    def _unaligned(self, exc: OSError) -> OSError:
        """EINVAL on a direct channel almost always means unaligned memory, offset or length: say so."""
        if not (self.direct and exc.errno == errno.EINVAL):
            return exc
        from zcopy.aligned import dio_alignment

        need = dio_alignment(self._fd)
        return OSError(
            errno.EINVAL,
            f"a direct (O_DIRECT) channel needs buffers aligned to {need.memory} bytes (zcopy.aligned_buffer) and "
            f"offsets and lengths that are multiples of {need.offset}",
            self.name,
        )

    def read(self, n: int = -1, position: int | None = None) -> bytes:
        """Up to n bytes (all to EOF when n < 0); fewer only at end of file."""
        fd = self._check_read()
        start = self.position if position is None else position
        if n < 0:
            n = max(0, os.fstat(fd).st_size - start)
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.readinto(view[got:], start + got)
            if k == 0:
                break
            got += k
        if position is None:
            self.position = start + got
        del view
        del buf[got:]
        return bytes(buf)

    # -- writing -----------------------------------------------------------------------------------------
    def write(self, data: Buffer, position: int | None = None) -> int:
        """Write all of data (at `position` without moving the channel's position). Returns len(data)."""
        return self.writev([data], position)

    def writev(self, buffers: Sequence[Buffer], position: int | None = None) -> int:
        """Gather-write every buffer completely, looping over short writes."""
        fd = self._check_write()
        if position is not None and position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        views = [v for v in (memoryview(b).cast("B") for b in buffers) if len(v)]
        total = sum(len(v) for v in views)
        pending = _observe.begin()
        calls = 0
        done = 0
        i = 0  # first view not yet fully written: an index, so many small buffers cost O(n), not O(n²)
        while i < len(views):
            batch = views[i : i + _IOV_MAX]
            try:
                n = os.writev(fd, batch) if position is None else os.pwritev(fd, batch, position + done)
            except OSError as exc:
                raise self._unaligned(exc) from None
            calls += 1
            done += n
            while i < len(views) and n >= len(views[i]):
                n -= len(views[i])
                i += 1
            if n:
                views[i] = views[i][n:]
        if pending is not None:
            route, user = ("direct", 0) if self.direct else ("readwrite", total)
            pending.end("write", route, total, {"writev" if position is None else "pwritev2": calls}, user)
        return total

    def force(self, metadata: bool = True) -> None:
        """fsync(2) (metadata=True) or fdatasync(2). An error is raised once, never retried into success:
        after a failed fsync Linux may have dropped the dirty pages (fsyncgate, 2018)."""
        fd = self._check()
        pending = _observe.begin()
        (os.fsync if metadata or not hasattr(os, "fdatasync") else os.fdatasync)(fd)
        if pending is not None:
            pending.end("force", "fsync" if metadata else "fdatasync", 0, {"fsync" if metadata else "fdatasync": 1})

    # -- locks -------------------------------------------------------------------------------------------
    def _fcntl_lock(self, ltype: int, position: int, size: int, wait: bool) -> bool:
        fd = self._check()
        if _sys.F_OFD_SETLK is not None and _sys.F_OFD_SETLKW is not None:
            cmd = _sys.F_OFD_SETLKW if wait else _sys.F_OFD_SETLK
        else:
            cmd = fcntl.F_SETLKW if wait else fcntl.F_SETLK
        arg = struct.pack(_FLOCK, ltype, os.SEEK_SET, position, size, 0)
        try:
            fcntl.fcntl(fd, cmd, arg)
        except OSError as exc:
            if not wait and exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _lock(self, position: int, size: int, shared: bool, wait: bool) -> FileLock | None:
        if position < 0 or size < 0:
            raise ValueError("lock position and size must be >= 0")
        if shared:
            self._check_read()
        else:
            self._check_write()
        self._locks = [held for held in self._locks if held.valid]
        for held in self._locks:
            if _overlap(held.position, held.size, position, size):
                raise OverlappingFileLockError(
                    f"{self.name}: this channel already holds {held!r}, which overlaps {position}+{size or 'EOF'}"
                )
        ok = self._fcntl_lock(fcntl.F_RDLCK if shared else fcntl.F_WRLCK, position, size, wait)
        if not ok:
            return None
        lk = FileLock(self, position, size, shared)
        self._locks.append(lk)
        return lk

    def lock(self, position: int = 0, size: int = 0, shared: bool = False) -> FileLock:
        """Block until the range is locked (size 0: to end of file, however it grows).
        OverlappingFileLockError if this channel already holds a lock overlapping the range."""
        lk = self._lock(position, size, shared, wait=True)
        assert lk is not None
        return lk

    def try_lock(self, position: int = 0, size: int = 0, shared: bool = False) -> FileLock | None:
        """Lock without waiting; None if another open file holds a conflicting lock.
        OverlappingFileLockError if this channel already holds a lock overlapping the range."""
        return self._lock(position, size, shared, wait=False)

    # -- mapping -----------------------------------------------------------------------------------------
    def map(self, mode: MapMode | None = None, position: int = 0, size: int | None = None) -> MappedBuffer:
        """Map [position, position+size) of the file: the article's FileChannel.map()."""
        from zcopy.mapped import MapMode, map_file

        mode = MapMode.READ_ONLY if mode is None else mode
        fd = self._check_read()
        if mode is MapMode.READ_WRITE:
            self._check_write()
        return map_file(fd, mode, position, size)

    # -- zero-copy transfers -----------------------------------------------------------------------------
    def transfer_to(
        self, position: int, count: int, target: Endpoint, *, route: str | None = None, fallback: bool = True,
        on_chunk: Callable[[memoryview], None] | None = None,
    ) -> int:  # fmt: skip
        """Move up to `count` bytes of this file starting at `position` to `target` (socket, SocketChannel,
        FileChannel, file object, pipe or fd) without moving this channel's position: the article's
        transferTo. Returns bytes moved: fewer than count only at end of file or when a non-blocking target
        is full. A target file is written at its own position (which advances). `on_chunk`: see transfer_from."""
        fd = self._check_read()
        if position < 0 or count < 0:
            raise ValueError("position and count must be >= 0")
        dst = _target_fd(target, writing=True)
        return self._move(target, fd, dst, position, None, count, route, fallback, self.name, "transfer_to", on_chunk)

    def transfer_from(
        self, source: Endpoint, position: int, count: int, *, route: str | None = None, fallback: bool = True,
        on_chunk: Callable[[memoryview], None] | None = None,
    ) -> int:  # fmt: skip
        """Move up to `count` bytes from `source` (socket, SocketChannel, file or pipe) into this file at
        `position`, without moving this channel's position. A source file is read from its own position.
        Returns bytes moved: fewer than count when the source ended (or a non-blocking source had no more).

        `on_chunk(view)`, if given, is called with every piece of the data, once and in order, while it sits in the
        route's user buffer and before it is written (e.g. `hasher.update`: the checksum runs over bytes still
        hot in the CPU cache; transfer_to into a socket or pipe shows what the target took, just after writing
        it). Only routes with a user buffer can do that (direct, readwrite): the others are
        skipped with that reason. The view is only valid during the call; copy it to keep it. With
        route="direct" each view is a slice of a page-aligned buffer: up to routes.direct.STREAM_CHUNK (2 MiB) bytes
        from a socket or pipe, up to routes.direct.CHUNK (8 MiB) from a file."""
        fd = self._check_write()
        if position < 0 or count < 0:
            raise ValueError("position and count must be >= 0")
        src = _target_fd(source, writing=False)
        name = str(getattr(source, "name", f"fd:{src}"))
        return self._move(
            source, src, fd, None, position, count, route, fallback, name, "transfer_from", on_chunk
        )

    def _move(
        self,
        peer: Endpoint,
        src: int,
        dst: int,
        offset: int | None,
        dst_offset: int | None,
        count: int,
        route: str | None,
        fallback: bool,
        name: str,
        op: str,
        on_chunk: Callable[[memoryview], None] | None = None,
    ) -> int:
        """routes.move() with the peer's blocking mode honoured; remembers the route for last_route."""
        # A channel opened direct=True (either end) asks for the direct route first.
        prefer = "direct" if self.direct or (isinstance(peer, FileChannel) and peer.direct) else None
        timeout = _socket_timeout(peer)
        # A Python socket with a timeout (an O_NONBLOCK fd underneath): the kernel does the waiting, and an EAGAIN
        # that still comes back means its SO_*TIMEO ran out, so routes.move() must not wait again (timeout 0).
        in_kernel = timeout is not None and timeout > 0
        waiting: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if in_kernel:
            sock = peer.socket if isinstance(peer, SocketChannel) else peer
            assert isinstance(sock, socket.socket) and timeout is not None  # only sockets have a timeout
            waiting = _kernel_wait(sock, timeout, writing=op == "transfer_to")
        with waiting:
            try:
                moved = routes.move(
                    src, dst, offset, count, route=route, fallback=fallback, dst_offset=dst_offset, name=name,
                    op=op, wait=timeout is not None, timeout=0.0 if in_kernel else None if timeout == -1.0 else timeout,
                    prefer=prefer, on_chunk=on_chunk,
                )
            except TimeoutError as exc:
                if not in_kernel:
                    raise
                err = TimeoutError(errno.ETIMEDOUT, f"{name}: the socket made no progress in {timeout}s")
                err.bytes_moved = getattr(exc, "bytes_moved", 0)  # type: ignore[attr-defined]
                raise err from None
        self.last_move = moved
        self.last_route = moved.route
        return moved.nbytes


def _target_fd(obj: Endpoint, writing: bool) -> int:
    if isinstance(obj, FileChannel):
        return obj._check_write() if writing else obj._check_read()
    if isinstance(obj, SocketChannel):
        return obj._check()
    return fd_of(obj)


class _kernel_wait:
    """For the length of one transfer, make a socket with a Python timeout block in the kernel instead.

    Python gives a socket with a timeout an O_NONBLOCK fd and polls before each call. A sendfile/splice loop on
    such an fd returns at every full (or empty) socket buffer: one EAGAIN, one poll() and one more call each
    time (bench/core.py compares the two: docs/benchmarks.md, "socket with a timeout" rows). Instead the fd
    is made blocking with SO_SNDTIMEO/SO_RCVTIMEO set to the timeout, so the kernel sleeps inside the call and
    still gives up (EAGAIN) after `timeout` seconds without progress. Flags and the old timeout are restored
    on exit, whatever happened.
    """

    __slots__ = ("flags", "old", "opt", "sock", "timeval")

    def __init__(self, sock: socket.socket, timeout: float, writing: bool) -> None:
        self.sock = sock
        self.opt = socket.SO_SNDTIMEO if writing else socket.SO_RCVTIMEO
        usec = max(1, round(timeout * 1_000_000))  # a zero timeval would mean "wait forever"
        sec = min(usec // 1_000_000, 2**31 - 1)
        self.timeval = struct.pack("@ll", sec, usec % 1_000_000 if sec < 2**31 - 1 else 0)
        self.flags = -1
        self.old = b""

    def __enter__(self) -> None:
        self.old = self.sock.getsockopt(socket.SOL_SOCKET, self.opt, len(self.timeval))
        self.sock.setsockopt(socket.SOL_SOCKET, self.opt, self.timeval)
        fd = self.sock.fileno()
        self.flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, self.flags & ~os.O_NONBLOCK)

    def __exit__(self, *exc: object) -> None:
        # The socket may have been closed by another thread meanwhile: then there is nothing to restore.
        fd = self.sock.fileno()
        if fd >= 0:
            fcntl.fcntl(fd, fcntl.F_SETFL, self.flags)
            self.sock.setsockopt(socket.SOL_SOCKET, self.opt, self.old)


def _socket_timeout(obj: object) -> float | None:
    """How to treat EAGAIN on this endpoint: None → return what moved (a raw non-blocking fd); -1.0 → wait
    without limit; t → wait up to t seconds per stall (a Python socket with a timeout behaves as blocking)."""
    sock = obj.socket if isinstance(obj, SocketChannel) else obj
    if isinstance(sock, socket.socket):
        t = sock.gettimeout()
        if t is None:
            return -1.0  # blocking socket: the kernel waits; never reached as EAGAIN
        return None if t == 0.0 else t
    return -1.0 if isinstance(obj, FileChannel) else None


class SocketChannel:
    """A connected stream socket (TCP or Unix) as a channel."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock

    @classmethod
    def open(cls, address: Any, *, timeout: float | None = None) -> SocketChannel:
        """Connect to (host, port) for TCP or a path (str/bytes) for a Unix socket."""
        if isinstance(address, (str, bytes, os.PathLike)):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(os.fspath(address))
            except BaseException:
                sock.close()
                raise
            return cls(sock)
        return cls(socket.create_connection(address, timeout=timeout))

    @property
    def closed(self) -> bool:
        return self.socket.fileno() < 0

    def _check(self) -> int:
        fd = self.socket.fileno()
        if fd < 0:
            raise ClosedChannelError("socket channel is closed")
        return fd

    def fileno(self) -> int:
        return self._check()

    def readinto(self, buf: bytearray | memoryview) -> int:
        self._check()
        pending = _observe.begin()
        n = self.socket.recv_into(buf)
        if pending is not None:
            pending.end("read", "readwrite", n, {"recvfrom": 1}, n)
        return n

    def read(self, n: int = 65536) -> bytes:
        """Up to n bytes (one recv); b"" when the peer closed."""
        buf = bytearray(n)
        got = self.readinto(buf)
        del buf[got:]
        return bytes(buf)

    def write(self, data: Buffer) -> int:
        """Send all of data."""
        self._check()
        pending = _observe.begin()
        view = memoryview(data).cast("B")
        calls = 0
        while view:
            view = view[self.socket.send(view) :]
            calls += 1
        n = memoryview(data).nbytes
        if pending is not None:
            pending.end("write", "readwrite", n, {"sendto": calls}, n)
        return n

    def shutdown_output(self) -> None:
        self._check()
        self.socket.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> SocketChannel:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SocketChannel {self.socket!r}>"
