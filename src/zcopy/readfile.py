"""zcopy.read_file(): a whole file into memory, by DMA from the disk (O_DIRECT) when that is the faster way.

The weights-loading job: a large cold file into new page-aligned memory, or into a buffer the caller reuses (a
preallocated array). By O_DIRECT the disk writes the caller's memory itself: no page-cache copy, no CPU copy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from zcopy import _sys, pagecache
from zcopy import observe as _observe
from zcopy.aligned import aligned_buffer, dio_alignment, is_aligned
from zcopy.errors import NotRegularFileError, RouteUnavailable, TruncatedFileError
from zcopy.routes import direct as _direct

# Largest single read: the kernel's cap (man 2 read), rounded down to any block size (a multiple of 1 MiB).
_MAX_READ = _sys.MAX_CHUNK // (1 << 20) * (1 << 20)


def read_file(
    path: str | os.PathLike[str],
    *,
    into: bytearray | memoryview | None = None,
    direct: bool | None = None,
) -> memoryview:
    """Read all of file `path` and return it as a memoryview: over new page-aligned memory, or over `into`
    (any writable buffer at least as long as the file, e.g. bytearray, numpy array, aligned_buffer; reused
    between calls, nothing is allocated).

    direct=None (default): by O_DIRECT unless the file is mostly in the page cache already (copying from memory
    is faster than reading the disk again), its file system cannot (tmpfs, procfs...) or refuses the first O_DIRECT
    read (EINVAL; bytes already read are never re-read another way), or `into` is not aligned for it; the route
    taken and the reason for a fallback are reported to `zcopy.observe` (op "read_file").
    direct=True: O_DIRECT or RouteUnavailable. direct=False: ordinary reads through the page cache.
    A file that shrinks while it is read raises TruncatedFileError; bytes appended meanwhile are not read.
    """
    pending = _observe.begin()
    name = os.fspath(path)
    _refuse_unless_regular(name, os.stat(name).st_mode)
    # O_NONBLOCK: should the path become a FIFO after the stat, open() still returns (regular files ignore it).
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    calls: dict[str, int] = {"newfstatat": 1, "openat": 1, "fstat": 1}
    try:
        st = os.fstat(fd)
        _refuse_unless_regular(name, st.st_mode)
        size = st.st_size
        view = None if into is None else memoryview(into).cast("B")
        if view is not None:
            if view.readonly:
                raise TypeError("into must be a writable buffer")
            if len(view) < size:
                raise ValueError(f"into holds {len(view)} bytes; {name} has {size}")
        why_not = None if direct is False else _why_not_direct(fd, size, view, direct is True)
        skipped: list[tuple[str, str]] = []
        if direct is True and why_not is not None:
            raise RouteUnavailable(_direct.NAME, why_not)
        if direct is None and why_not is not None:
            skipped.append((_direct.NAME, why_not))
        use_direct = direct is not False and why_not is None
        if use_direct:
            try:
                out, n, user = _read_direct(fd, size, view, calls)
            except RouteUnavailable as exc:
                # A file system that passed the checks above and still refused (some FUSE mounts): refused
                # before any byte was read, so direct=None reads through the page cache and says why.
                if direct is True:
                    raise
                skipped.append((_direct.NAME, exc.reason))
                use_direct = False
        if not use_direct:
            out, n, user = _read_buffered(fd, size, view, calls)
        if n < size and os.fstat(fd).st_size < size:
            raise TruncatedFileError(name, n, size, n)
    finally:
        os.close(fd)
    if pending is not None:
        route = _direct.NAME if use_direct else "readwrite"
        pending.end("read_file", route, n, calls, user, skipped)
    return out[:n]


def _refuse_unless_regular(name: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory; read_file reads one regular file", name)
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else (
            "a socket")
        raise NotRegularFileError(f"{name}: not a regular file ({kind}); read_file reads regular files only")


def _why_not_direct(fd: int, size: int, view: memoryview | None, forced: bool) -> str | None:
    """Why this read should not (or cannot) go by O_DIRECT; None: it should."""
    why = _direct.refusal(fd)
    if why is not None:
        return why
    need = dio_alignment(fd)
    if view is not None and not is_aligned(view, need.memory):
        return f"into is not aligned to {need.memory} bytes (zcopy.aligned_buffer gives memory that is)"
    if size == 0:
        return "the file reports size 0 (empty, or procfs-like: read until EOF instead)"
    if not forced:
        res = pagecache.residency(fd)
        if res.fraction is not None and res.fraction >= _direct.CACHED_FRACTION:
            return f"{res.fraction:.0%} of the file is in the page cache: a copy from memory is faster"
    return None


def _read_direct(
    fd: int, size: int, view: memoryview | None, calls: dict[str, int]
) -> tuple[memoryview, int, int]:
    """(buffer, bytes read, bytes copied by the CPU). The aligned body by DMA; a tail shorter than one block by an
    ordinary read when `into` has no room for the whole last block (DMA writes whole blocks)."""
    a = dio_alignment(fd).offset
    whole = -(-size // a) * a  # size rounded up to a block
    out = aligned_buffer(whole) if view is None else view
    body = whole if len(out) >= whole else size // a * a
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | _sys.O_DIRECT)
    except OSError as exc:
        raise RouteUnavailable(_direct.NAME, f"{errno.errorcode.get(exc.errno or 0)}: no O_DIRECT here") from None
    calls["fcntl"] = 2
    reads_before = calls.get("preadv2", 0)
    try:
        n = _preadv_loop(fd, out, 0, body, calls)
    except OSError as exc:
        if exc.errno != errno.EINVAL or calls.get("preadv2", 0) != reads_before:
            raise  # not a refusal, or bytes were already read: never a silent fallback mid-file
        # EINVAL on the first O_DIRECT read: the file system accepted the flag but cannot do direct I/O.
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_sys.O_DIRECT)
        calls["fcntl"] += 2
        raise RouteUnavailable(_direct.NAME, "EINVAL on the first O_DIRECT read: the file system refuses it") from None
    user = 0
    if n == body and body < size:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_sys.O_DIRECT)
        calls["fcntl"] += 2
        tail = _preadv_loop(fd, out, n, size, calls)
        user = tail
        n += tail
    return out, min(n, size), user


def _read_buffered(
    fd: int, size: int, view: memoryview | None, calls: dict[str, int]
) -> tuple[memoryview, int, int]:
    if size == 0:
        # procfs/sysfs: size 0 with data behind it; read to EOF, then place it (fits `into` or new memory).
        chunks = []
        while data := os.read(fd, 1 << 16):
            calls["read"] = calls.get("read", 0) + 1
            chunks.append(data)
        blob = b"".join(chunks)
        if view is not None and len(view) < len(blob):
            raise ValueError(f"into holds {len(view)} bytes; the file had {len(blob)}")
        out = aligned_buffer(len(blob)) if view is None else view
        out[: len(blob)] = blob
        return out, len(blob), 2 * len(blob)
    out = aligned_buffer(size) if view is None else view
    n = _preadv_loop(fd, out, 0, size, calls)
    return out, n, n


def _preadv_loop(fd: int, out: memoryview, start: int, end: int, calls: dict[str, int]) -> int:
    """preadv into out[start:end] at file offset start until end or EOF; returns the bytes read."""
    pos = start
    while pos < end:
        n = os.preadv(fd, [out[pos : min(end, pos + _MAX_READ)]], pos)
        calls["preadv2"] = calls.get("preadv2", 0) + 1
        if n == 0:
            break
        pos += n
    return pos - start


__all__ = ["read_file"]
