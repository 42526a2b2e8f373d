"""Digests of file ranges for send/recv: over an mmap view (no copy) for the receiver's own partial files, or
through a reused buffer for files another process may truncate under us (the sender's sources, the receiver's
existing final files), because touching a mapping of a file that shrank raises SIGBUS and kills CPython
(cpython #148650); a read() of it returns fewer bytes instead.
"""

from __future__ import annotations

import mmap

from zcopy import FileChannel, MapMode
from zcopy.transfer import checksum
from zcopy.transfer.checksum import Hasher

# 1 MiB reused buffer: the same size as the core's readwrite route (_sys.READWRITE_BUFFER), large enough that the
# per-call overhead is noise next to hashing, small enough to stay in L2/L3.
BUFFER_SIZE = 1 << 20


def update_read(hasher: Hasher, ch: FileChannel, start: int, end: int, buf: bytearray | None = None) -> int:
    """Feed bytes [start, end) of `ch` to `hasher` by pread into a reused buffer; returns bytes hashed
    (fewer than end - start if the file is shorter now)."""
    view = memoryview(buf if buf is not None else bytearray(BUFFER_SIZE))
    pos = start
    while pos < end:
        n = ch.readinto(view[: min(len(view), end - pos)], pos)
        if n == 0:
            break
        hasher.update(view[:n])
        pos += n
    return pos - start


def digest_read(algo: int, ch: FileChannel, size: int) -> bytes | None:
    """Digest of [0, size) read through a buffer; None if the file holds fewer than `size` bytes now."""
    h = checksum.new_hasher(algo)
    if update_read(h, ch, 0, size) != size:
        return None
    return h.digest()


def digest_mapped(algo: int, ch: FileChannel, size: int) -> bytes:
    """Digest of [0, size) of a file we own, computed over a read-only mapping: the bytes are hashed where they
    lie in the page cache, never copied to a buffer."""
    h = checksum.new_hasher(algo)
    if size == 0 or algo == checksum.NONE:
        return h.digest()
    with ch.map(MapMode.READ_ONLY, 0, size) as m:
        # One sequential pass: the kernel reads ahead aggressively and may reclaim pages behind us early.
        m.madvise(mmap.MADV_SEQUENTIAL)
        with memoryview(m) as view:
            h.update(view)
    return h.digest()
