"""Direct I/O's preconditions: page-aligned memory (`aligned_buffer`), the alignment a file's file system demands
(statx STATX_DIOALIGN, else the device's logical block size, else 4096), and which file systems cannot gain from
O_DIRECT at all. No data moves here; routes.direct and read_file use these facts.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import mmap
import os
import struct
from typing import Any

from zcopy._record import Record

# When nothing better is known: 4096 is the page size and the sector size of every "4Kn" disk, so it satisfies
# every block device's logical block size (512 or 4096) and every file system's block size up to a page.
FALLBACK_ALIGN = 4096

# statx(2), include/uapi/linux/stat.h: STATX_DIOALIGN (Linux 6.1) and the offsets of stx_dio_mem_align and
# stx_dio_offset_align in struct statx (after stx_mnt_id at 144); the struct is 256 bytes.
STATX_DIOALIGN = 0x2000
_STATX_SIZE = 256
_STATX_DIO_OFFSET = 152
_AT_EMPTY_PATH = 0x1000

# File systems whose files *are* page cache: O_DIRECT is refused (ramfs) or accepted but served from the same
# pages (tmpfs since Linux 6.6), so there is no DMA to gain and the route must not claim one.
PAGE_CACHE_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})


class DioAlign(Record):
    """What O_DIRECT on one file needs: buffer address aligned to `memory`, file offsets and lengths to `offset`.
    `source` says where the numbers came from (statx, the block device, or the fallback)."""

    __slots__ = ("memory", "offset", "source")

    def __init__(self, memory: int, offset: int, source: str) -> None:
        self.memory = memory
        self.offset = offset
        self.source = source


@functools.lru_cache(maxsize=1)
def _statx_fn() -> Any:
    """libc's statx (glibc 2.28+), looked up once; None where there is none."""
    try:
        return ctypes.CDLL(None, use_errno=True).statx
    except (OSError, AttributeError):
        return None


def _statx_dio(fd: int) -> tuple[int, int] | None:
    """(dio_mem_align, dio_offset_align) from statx, or None if the kernel/libc/file system does not say."""
    fn = _statx_fn()
    if fn is None:
        return None
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    if fn(fd, b"", _AT_EMPTY_PATH, STATX_DIOALIGN, buf) != 0:
        return None
    (mask,) = struct.unpack_from("I", buf, 0)
    if not mask & STATX_DIOALIGN:
        return None  # this file system does not report it (ext4/xfs/btrfs... do, for regular files)
    mem, off = struct.unpack_from("II", buf, _STATX_DIO_OFFSET)
    return mem, off


def _logical_block_size(dev: int) -> int | None:
    """The block device's logical block size from sysfs (a partition's queue lives in its parent's directory)."""
    base = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    for path in (f"{base}/queue/logical_block_size", f"{base}/../queue/logical_block_size"):
        with contextlib.suppress(OSError, ValueError), open(path, "rb") as f:
            return int(f.read())
    return None


def dio_alignment(fd: int) -> DioAlign:
    """The alignment O_DIRECT needs on this file. statx's answer when the kernel has STATX_DIOALIGN (6.1+); an
    offset alignment of 0 there means "no direct I/O on this file" and is returned as is for the caller to
    refuse. Else the logical block size for memory and offsets; else 4096 for both."""
    got = _statx_dio(fd)
    if got is not None:
        return DioAlign(got[0], got[1], "statx")
    lbs = _logical_block_size(os.fstat(fd).st_dev)
    if lbs:
        return DioAlign(lbs, lbs, "block device")
    return DioAlign(FALLBACK_ALIGN, FALLBACK_ALIGN, "fallback")


def fs_type(fd: int) -> str | None:
    """The file system type of an open file, matched by device number in /proc/self/mountinfo (None: unknown)."""
    dev = os.fstat(fd).st_dev
    want = f"{os.major(dev)}:{os.minor(dev)}"
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            # "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": field 3 is major:minor, the type
            # follows the " - " separator.
            left, sep, right = line.partition(" - ")
            parts = left.split()
            if sep and len(parts) > 2 and parts[2] == want:
                return right.split()[0]
    return None


def page_cache_fs(fd: int) -> str | None:
    """The name of the file system if it keeps files only in the page cache (tmpfs, ramfs...), else None."""
    kind = fs_type(fd)
    return kind if kind in PAGE_CACHE_FILESYSTEMS else None


def aligned_buffer(size: int) -> memoryview:
    """`size` bytes of new zeroed memory starting on a page boundary, as a writable memoryview (buffer protocol:
    numpy.frombuffer, os.preadv, socket.recv_into all take it). Page alignment satisfies every file system's
    O_DIRECT memory alignment. The memory is anonymous mmap memory, released when the last view is gone."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    # mmap refuses length 0; one page backs an empty view so that it too has an aligned address.
    m = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return memoryview(m)[:size]


def address_of(view: memoryview) -> int:
    """The address of a writable buffer's first byte (for the alignment check)."""
    if view.readonly:
        raise TypeError("a buffer to read into must be writable")
    if len(view) == 0:
        return 0
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def is_aligned(view: memoryview, align: int) -> bool:
    return align <= 1 or address_of(view) % align == 0


__all__ = [
    "FALLBACK_ALIGN", "DioAlign", "address_of", "aligned_buffer", "dio_alignment", "fs_type", "is_aligned",
    "page_cache_fs",
]
