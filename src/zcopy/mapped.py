"""Memory-mapped file regions: MapMode, MappedBuffer (an mmap.mmap with zcopy's rules) and map_file().

Owns the mapping rules FileChannel.map relies on: extend-and-allocate before a READ_WRITE mapping past EOF
(so a full disk is ENOSPC at map time, not SIGBUS on first touch), msync of a sub-range only, populate on
load(), and use-after-close as ClosedChannelError instead of mmap's bare ValueError.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import mmap
import os
import stat
from typing import Any, Literal, NoReturn, TypeVar

from zcopy import observe as _observe
from zcopy._sys import PAGE_SIZE
from zcopy.errors import ClosedChannelError, NonReadableChannelError, NonWritableChannelError

__all__ = ["MapMode", "MappedBuffer", "map_file", "page_span"]

_M = TypeVar("_M", bound="MappedBuffer")  # typing.Self is 3.11+; we support 3.10


class MapMode(enum.Enum):
    """How a region is mapped (Java's FileChannel.MapMode)."""

    READ_ONLY = "read_only"  # MAP_SHARED, PROT_READ: writes raise TypeError
    READ_WRITE = "read_write"  # MAP_SHARED, PROT_READ|PROT_WRITE: writes reach the file (page cache)
    PRIVATE = "private"  # MAP_PRIVATE copy-on-write: writes stay in this process, never reach the file


_ACCESS = {
    MapMode.READ_ONLY: mmap.ACCESS_READ,
    MapMode.READ_WRITE: mmap.ACCESS_WRITE,
    MapMode.PRIVATE: mmap.ACCESS_COPY,
}

# madvise(2): MADV_POPULATE_READ = 22 (Linux >= 5.14) faults the whole range in one call, read-only so a
# shared writable mapping is not dirtied; Python 3.11's mmap module does not export it. Older kernels answer
# EINVAL and load() touches one byte per page instead.
MADV_POPULATE_READ: int = getattr(mmap, "MADV_POPULATE_READ", 22)

# Zero-fill fallback for filesystems without fallocate: 1 MiB per pwrite, the same size as the readwrite
# route's buffer (_sys.READWRITE_BUFFER), enough to keep the syscall count per GiB at 1024.
_ZERO_CHUNK = 1 << 20


def page_span(offset: int, size: int | None, limit: int, page: int = PAGE_SIZE) -> tuple[int, int]:
    """Return (start, length) covering [offset, offset+size) with start aligned down to ``page``.

    msync(2) and madvise(2) demand a page-aligned address; the range is widened at the front only, never
    beyond ``limit`` (the mapping's length). ``size=None`` means "to the end". Pure arithmetic, no I/O.
    """
    if offset < 0 or offset > limit:
        raise ValueError(f"offset {offset} outside the mapping of {limit} bytes")
    if size is None:
        size = limit - offset
    if size < 0 or offset + size > limit:
        raise ValueError(f"range [{offset}, {offset}+{size}) exceeds the mapping of {limit} bytes")
    start = offset - offset % page
    return start, offset + size - start


class MappedBuffer(mmap.mmap):
    """A mapped file region. Subclasses mmap.mmap so ``memoryview(m)`` works on every supported Python.

    ``mode`` is the MapMode, ``position`` the file offset of byte 0. ``len()``, indexing/slicing, ``find`` and
    ``memoryview(m)``/``view()`` cover exactly that region. Any use after ``close()`` raises
    ClosedChannelError (a ValueError); ``close()`` while memoryviews are alive raises BufferError.
    Build it with ``map_file`` or ``FileChannel.map``.
    """

    mode: MapMode
    position: int

    def __new__(cls: type[_M], fileno: int, length: int, *, mode: MapMode, position: int = 0) -> _M:
        self = super().__new__(cls, fileno, length, access=_ACCESS[mode], offset=position)
        self.mode = mode
        self.position = position
        return self

    def _closed(self) -> NoReturn:
        raise ClosedChannelError(
            f"mapping of {self.mode.name} at file offset {self.position} is closed (unmapped)"
        )

    # --- the mapping's own operations ---
    def force(self, offset: int = 0, size: int | None = None) -> None:
        """msync(MS_SYNC) of [offset, offset+size) only (to the end if size is None); no-op unless READ_WRITE.

        The start is aligned down to the page size, as msync(2) requires; nothing beyond the range is flushed.
        """
        if self.closed:
            self._closed()
        start, length = page_span(offset, size, len(self))
        if length:
            pending = _observe.begin()
            super().flush(start, length)
            if pending is not None:
                pending.end("force", "msync", length, {"msync": 1})

    def load(self) -> None:
        """Bring the whole region into memory now (Java's load()): WILLNEED read-ahead, then populate.

        MADV_POPULATE_READ maps every page in one call; where the kernel lacks it, read one byte per page.
        """
        if self.closed:
            self._closed()
        pending = _observe.begin()
        super().madvise(mmap.MADV_WILLNEED)
        try:
            super().madvise(MADV_POPULATE_READ)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            # A strided memoryview copy reads one byte per page at C speed: the touch that faults it in.
            with memoryview(self) as mv:
                mv[::PAGE_SIZE].tobytes()
        if pending is not None:
            pending.end("load", "madvise", len(self), {"madvise": 2})

    def advise(self, option: int, start: int = 0, length: int | None = None) -> None:
        """madvise(option) over [start, start+length) (to the end if length is None), start aligned down."""
        if self.closed:
            self._closed()
        first, span = page_span(start, length, len(self))
        if span:
            super().madvise(option, first, span)

    def view(self) -> memoryview:
        """A memoryview of exactly the mapped region; release it (``with``/``.release()``) before close()."""
        if self.closed:
            self._closed()
        return memoryview(self)

    def close(self) -> None:
        """Unmap now (Java cannot). Idempotent. BufferError if memoryviews of the mapping are still alive."""
        pending = None if self.closed else _observe.begin()
        try:
            super().close()
            if pending is not None:
                # CPython's mmap holds a dup of the fd: closing the mapping is munmap + close.
                pending.end("unmap", "mmap", 0, {"munmap": 1, "close": 1})
        except BufferError as e:
            raise BufferError(
                f"cannot unmap {self!r}: memoryviews of it are still alive; release them first "
                "(mv.release() or `with memoryview(m) as mv:`)"
            ) from e

    def __enter__(self: _M) -> _M:
        if self.closed:
            self._closed()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"length={len(self)}"
        return f"<MappedBuffer {self.mode.name} position={self.position} {state}>"

    # --- mmap.mmap operations, guarded: a closed mapping is ClosedChannelError, not "mmap closed or invalid"
    def __len__(self) -> int:
        if self.closed:
            self._closed()
        return super().__len__()

    def __getitem__(self, key: Any) -> Any:
        if self.closed:
            self._closed()
        return super().__getitem__(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        if self.closed:
            self._closed()
        super().__setitem__(key, value)

    def find(self, sub: Any, start: int | None = None, end: int | None = None) -> int:
        if self.closed:
            self._closed()
        return super().find(sub, *_bounds(start, end))

    def rfind(self, sub: Any, start: int | None = None, end: int | None = None) -> int:
        if self.closed:
            self._closed()
        return super().rfind(sub, *_bounds(start, end))

    def flush(self, offset: int = 0, size: int | None = None) -> None:
        """mmap.flush with the same page alignment as force()."""
        self.force(offset, size)

    def madvise(self, option: int, start: int = 0, length: int | None = None) -> None:
        self.advise(option, start, length)

    def read(self, n: int | None = None) -> bytes:
        if self.closed:
            self._closed()
        return super().read(n)

    def read_byte(self) -> int:
        if self.closed:
            self._closed()
        return super().read_byte()

    def readline(self) -> bytes:
        if self.closed:
            self._closed()
        return super().readline()

    def write(self, data: Any) -> int:
        if self.closed:
            self._closed()
        return super().write(data)

    def write_byte(self, byte: int) -> None:
        if self.closed:
            self._closed()
        super().write_byte(byte)

    def seek(self, pos: int, whence: Literal[0, 1, 2, 3, 4] = os.SEEK_SET) -> None:
        if self.closed:
            self._closed()
        super().seek(pos, whence)

    def tell(self) -> int:
        if self.closed:
            self._closed()
        return super().tell()

    def size(self) -> int:
        if self.closed:
            self._closed()
        return super().size()

    def move(self, dest: int, src: int, count: int) -> None:
        if self.closed:
            self._closed()
        super().move(dest, src, count)

    def resize(self, newsize: int) -> NoReturn:
        # mremap would change the file and the region behind every view; map a new region instead.
        raise OSError(errno.EOPNOTSUPP, "MappedBuffer cannot be resized; map a new region")


def _bounds(start: int | None, end: int | None) -> tuple[int, ...]:
    # mmap.find accepts positional (start[, end]) only; pass just what the caller gave.
    if end is not None:
        return (0 if start is None else start, end)
    return () if start is None else (start,)


def map_file(fd: int, mode: MapMode, position: int = 0, size: int | None = None) -> MappedBuffer:
    """Map ``size`` bytes of ``fd`` from file offset ``position`` (``size=None``: to the end of the file).

    - ``position`` must be a multiple of mmap.ALLOCATIONGRANULARITY (ValueError otherwise, naming the aligned
      offset to map from): mmap(2) maps whole pages, and before Python 3.12 a Python class cannot export a
      buffer that starts inside its mapping, so ``memoryview(m)`` would silently include the bytes before
      ``position``.
    - READ_WRITE past EOF first extends the file and allocates the new blocks (posix_fallocate; on
      EOPNOTSUPP/EINVAL, ftruncate + zero-filling writes), so a full disk is OSError(ENOSPC) here and the file
      keeps its old size, instead of SIGBUS at the first store. READ_ONLY/PRIVATE past EOF: ValueError.
    - A region of 0 bytes is a ValueError: mmap(2) cannot map nothing, and a placeholder object would not be a
      real mapping. Check ``size()`` first for files that may be empty.
    - No 2 GiB cap: lengths are 64-bit.
    """
    if not isinstance(mode, MapMode):
        raise TypeError(f"mode must be a MapMode, not {mode!r}")
    if position < 0:
        raise ValueError(f"position must be >= 0, got {position}")
    if size is not None and size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if position % mmap.ALLOCATIONGRANULARITY:
        aligned = position - position % mmap.ALLOCATIONGRANULARITY
        raise ValueError(
            f"position {position} is not a multiple of mmap.ALLOCATIONGRANULARITY "
            f"({mmap.ALLOCATIONGRANULARITY}); map from {aligned} and use view()[{position - aligned}:]"
        )
    pending = _observe.begin()
    _check_access(fd, mode)
    st = os.fstat(fd)
    file_size = st.st_size
    if size is None:
        if position > file_size:
            raise ValueError(f"position {position} is beyond the end of the file ({file_size} bytes)")
        size = file_size - position
    if size == 0:
        raise ValueError(
            f"cannot map 0 bytes (file of {file_size} bytes, position {position}): mmap(2) needs length > 0"
        )
    end = position + size
    if end > file_size:
        if mode is not MapMode.READ_WRITE:
            raise ValueError(
                f"{mode.name} mapping of {size} bytes at position {position} ends at {end}, beyond the end "
                f"of the file ({file_size} bytes); only READ_WRITE extends the file"
            )
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"cannot extend a non-regular file (fd {fd}) to {end} bytes for mapping")
        _extend(fd, file_size, end)
    m = MappedBuffer(fd, size, mode=mode, position=position)
    if pending is not None:
        # Ours: fcntl(F_GETFL) + fstat (+ fallocate when extending); CPython's mmap(): fstat,
        # fcntl(F_DUPFD_CLOEXEC) (it keeps its own fd), mmap.
        calls = {"fcntl": 2, "fstat": 2, "mmap": 1}
        if end > file_size:
            calls["fallocate"] = 1
        pending.end("map", "mmap", size, calls)
    return m


def _check_access(fd: int, mode: MapMode) -> None:
    # mmap(2) needs a readable fd for every mode and a writable one for MAP_SHARED+PROT_WRITE; say so in
    # zcopy's words instead of EACCES (or EBADF from fallocate) halfway through.
    acc = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    if acc == os.O_WRONLY:
        raise NonReadableChannelError(f"fd {fd} is write-only; mapping needs read access")
    if mode is MapMode.READ_WRITE and acc == os.O_RDONLY:
        raise NonWritableChannelError(f"fd {fd} is read-only; a READ_WRITE mapping needs write access")


def _extend(fd: int, old_size: int, new_size: int) -> None:
    """Grow the file to ``new_size`` with the new blocks allocated; on any error restore ``old_size``."""
    try:
        try:
            os.posix_fallocate(fd, old_size, new_size - old_size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            _zero_fill(fd, old_size, new_size)
    except BaseException:
        # Never leave a half-grown file behind: a partial fallocate or zero fill may have moved EOF.
        if os.fstat(fd).st_size != old_size:
            os.ftruncate(fd, old_size)
        raise


def _zero_fill(fd: int, start: int, end: int) -> None:
    # Written zeros allocate real blocks (a bare ftruncate would only make a hole that SIGBUSes on ENOSPC).
    zeros = memoryview(bytes(min(_ZERO_CHUNK, end - start)))
    pos = start
    while pos < end:
        pos += os.pwrite(fd, zeros[: end - pos], pos)
