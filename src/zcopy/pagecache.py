"""Is a file's data in the page cache? mincore(2) over a mapping that touches none of its pages.

The selection of the direct route asks this: a cached source is copied fastest from memory (copy_file_range), a
cold one fastest by DMA (direct). preadv2(RWF_NOWAIT) is no probe: it starts readahead for what it asks about.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading

from zcopy._record import Record

_PROT_READ = 0x1
_MAP_SHARED = 0x1
_MAP_FAILED = ctypes.c_void_p(-1).value

# Probe at most this many bytes of a file: a 1 TiB file would otherwise need a 256 MiB residency vector; pages are
# sampled evenly across the file instead (the answer is a fraction, not an inventory).
PROBE_WINDOWS = 16
PROBE_WINDOW = 4 << 20


class Residency(Record):
    """How many of the probed pages are resident; `probed` 0 means the file is empty, None fields: unknown."""

    __slots__ = ("probed", "resident")

    def __init__(self, resident: int | None, probed: int) -> None:
        self.resident = resident
        self.probed = probed

    @property
    def fraction(self) -> float | None:
        if self.resident is None:
            return None
        return self.resident / self.probed if self.probed else 0.0


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]  # fmt: skip
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    except (OSError, AttributeError):
        return None
    return libc


def _window(libc: ctypes.CDLL, fd: int, start: int, length: int) -> int | None:
    """Resident pages in [start, start+length) (start page-aligned), or None if the probe failed."""
    addr = libc.mmap(None, length, _PROT_READ, _MAP_SHARED, fd, start)
    if addr is None or addr == _MAP_FAILED:
        return None
    try:
        pages = (length + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        if libc.mincore(addr, length, vec) != 0:
            return None
        return sum(b & 1 for b in bytes(vec))
    finally:
        libc.munmap(addr, length)


def residency(fd: int) -> Residency:
    """Resident pages of the file open on fd, over the whole file when it is at most PROBE_WINDOWS ×
    PROBE_WINDOW bytes, else over that many windows spread evenly (first and last included)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return Residency(0, 0)
    libc = _libc()
    if libc is None:
        return Residency(None, 0)
    page = mmap.PAGESIZE
    if size <= PROBE_WINDOWS * PROBE_WINDOW:
        spans = [(0, size)]
    else:
        step = (size - PROBE_WINDOW) // (PROBE_WINDOWS - 1)
        spans = [((i * step) // page * page, PROBE_WINDOW) for i in range(PROBE_WINDOWS)]
    resident = probed = 0
    for start, length in spans:
        length = min(length, size - start)
        got = _window(libc, fd, start, length)
        if got is None:
            return Residency(None, 0)
        resident += got
        probed += (length + page - 1) // page
    return Residency(resident, probed)


_LIBC: list[ctypes.CDLL | None] = []
# all_resident()'s residency vector, made once (a new ctypes array type per call costs more than the syscalls):
# up to _VEC_PAGES pages per question, larger ranges are asked in parts.
_VEC_PAGES = 4096
_VEC = bytearray(_VEC_PAGES)
_VEC_C = (ctypes.c_ubyte * _VEC_PAGES).from_buffer(_VEC)
_VEC_LOCK = threading.Lock()


def all_resident(fd: int, offset: int, count: int) -> bool | None:
    """Are all pages of ``count`` bytes of ``fd`` from ``offset`` in the page cache (None: cannot tell)? mmap +
    mincore + munmap, no page touched (the server asks this before each large body chunk it would send)."""
    if not _LIBC:
        _LIBC.append(_libc())
    libc = _LIBC[0]
    if libc is None or count <= 0:
        return None
    page = mmap.PAGESIZE
    pos, end = offset - offset % page, offset + count
    while pos < end:
        length = min(end - pos, _VEC_PAGES * page)
        pages = (length + page - 1) // page
        addr = libc.mmap(None, length, _PROT_READ, _MAP_SHARED, fd, pos)
        if addr is None or addr == _MAP_FAILED:
            return None
        try:
            with _VEC_LOCK:
                if libc.mincore(addr, length, _VEC_C) != 0:
                    return None
                if _VEC.find(0, 0, pages) != -1:  # bit 0: resident; the other bits are reserved (zero)
                    return False
        finally:
            libc.munmap(addr, length)
        pos += length
    return True
