"""Route `mmap`: map the source file and write(2) from the mapping. The article's second path: the page cache is
the user buffer, so one CPU copy (mapping → target buffer) instead of two. The kernel reads the mapping; if the file
is truncated meanwhile it returns EFAULT (never SIGBUS, which only a user-space touch would raise).
"""

from __future__ import annotations

import errno
import mmap
import os

from zcopy import _sys
from zcopy.routes._base import CPU, CopyModel, GiveUp, Hop, Status, Tally, build_model, give_up_or_raise

NAME = "mmap"
# Map at most this much at a time: bounds virtual address use and page-table setup per window.
_WINDOW = 64 << 20


def check(src_kind: str, dst_kind: str) -> str | None:
    if src_kind != "file":
        return f"mmap needs a regular file as source; the source is a {src_kind}"
    return None


def model(src_kind: str, dst_kind: str) -> CopyModel:
    dst = {"file": "page cache", "socket": "socket buffer", "pipe": "pipe buffer"}.get(dst_kind, dst_kind)
    middle = (Hop("page cache (mapped into user space)", dst, CPU, "write() from the mapping"),)
    return build_model(NAME, src_kind, dst_kind, middle, user_space=True)


def move(
    src_fd: int, dst_fd: int, offset: int | None, count: int, dst_offset: int | None, tally: Tally | None
) -> tuple[int, Status]:
    if offset is None:
        raise GiveUp("mmap needs a source offset (a regular file)")
    if count == 0:  # an empty file: nothing to map, and nothing missing
        return 0, Status.DONE
    size = os.fstat(src_fd).st_size
    if size == 0:
        raise GiveUp("mmap cannot map an empty or procfs-like file")
    moved = 0
    while moved < count:
        pos = offset + moved
        if pos >= size:
            return moved, Status.EOF
        base = pos - pos % mmap.ALLOCATIONGRANULARITY
        length = min(size - base, pos - base + min(count - moved, _WINDOW))
        try:
            m = mmap.mmap(src_fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=base)
        except OSError as exc:
            if moved == 0:
                raise GiveUp(f"{errno.errorcode.get(exc.errno or 0, exc.errno)}: mmap refused the source") from None
            raise
        if tally is not None:
            tally.add("mmap")
        try:
            view = memoryview(m)
            try:
                start = pos - base
                while start < length:
                    try:
                        with view[start : start + min(length - start, _sys.MAX_CHUNK)] as chunk:
                            if dst_offset is None:
                                n = os.write(dst_fd, chunk)
                            else:
                                n = os.pwrite(dst_fd, chunk, dst_offset + moved)
                    except BlockingIOError:
                        return moved, Status.DST_AGAIN  # nothing lost: the source is positional
                    except OSError as exc:
                        if exc.errno == errno.EFAULT:  # the mapped file shrank under us
                            return moved, Status.EOF
                        if moved == 0 and exc.errno in _sys.GIVE_UP_ERRNOS:
                            raise give_up_or_raise(exc, 0, "write from the mapping refused") from None
                        exc.bytes_moved = moved  # type: ignore[attr-defined]
                        raise
                    if tally is not None:
                        tally.add("write" if dst_offset is None else "pwrite64")
                        tally.user_bytes += n
                    moved += n
                    start += n
            finally:
                view.release()
        finally:
            m.close()
            if tally is not None:
                tally.add("munmap")
    return moved, Status.DONE
