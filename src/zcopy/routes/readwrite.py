"""Route `readwrite`: read(2) into one reused user buffer, write(2) it out. The article's traditional path with its
two CPU copies; it works for every pair of fds, so it is the route that never gives up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from zcopy import _sys
from zcopy.routes._base import CPU, CopyModel, Hop, Status, Tally, build_model, write_all

NAME = "readwrite"
_local = threading.local()


def check(src_kind: str, dst_kind: str) -> str | None:
    return None


def model(src_kind: str, dst_kind: str) -> CopyModel:
    src = {"file": "page cache", "socket": "socket buffer", "pipe": "pipe buffer"}.get(src_kind, src_kind)
    dst = {"file": "page cache", "socket": "socket buffer", "pipe": "pipe buffer"}.get(dst_kind, dst_kind)
    middle = (Hop(src, "user buffer", CPU), Hop("user buffer", dst, CPU))
    return build_model(NAME, src_kind, dst_kind, middle, user_space=True)


def _buffer() -> memoryview:
    # One buffer per thread, reused across calls: no allocation per chunk, no sharing between threads.
    buf: memoryview | None = getattr(_local, "buf", None)
    if buf is None:
        buf = memoryview(bytearray(_sys.READWRITE_BUFFER))
        _local.buf = buf
    return buf


def move(
    src_fd: int, dst_fd: int, offset: int | None, count: int, dst_offset: int | None, tally: Tally | None,
    on_chunk: Callable[[memoryview], None] | None = None,
) -> tuple[int, Status]:  # fmt: skip
    buf = _buffer()
    # A positional source loses nothing by stopping when a non-blocking target fills up; a stream source must
    # deliver what it already read, so then we wait for the target instead.
    may_stop = offset is not None and not os.get_blocking(dst_fd)
    moved = 0
    while moved < count:
        want = min(count - moved, len(buf))
        try:
            got = os.readv(src_fd, [buf[:want]]) if offset is None else os.preadv(src_fd, [buf[:want]], offset + moved)
        except BlockingIOError:
            if tally is not None:
                tally.add("readv")
            return moved, Status.SRC_AGAIN
        except OSError as exc:
            exc.bytes_moved = moved  # type: ignore[attr-defined]
            raise
        if tally is not None:
            tally.add("readv" if offset is None else "preadv2")
            tally.user_bytes += got
        if got == 0:
            return moved, Status.EOF
        if on_chunk is not None and not may_stop:
            on_chunk(buf[:got])
        try:
            if may_stop:
                n = _write_once(dst_fd, buf[:got], dst_offset, moved, tally)
                if on_chunk is not None and n:
                    # Only what the target took: the next call reads the rest again and shows it then.
                    on_chunk(buf[:n])
                moved += n
                if n < got:
                    return moved, Status.DST_AGAIN
                continue
            n = write_all(dst_fd, buf[:got], None if dst_offset is None else dst_offset + moved, tally)
        except OSError as exc:
            exc.bytes_moved = moved  # type: ignore[attr-defined]
            raise
        if tally is not None:
            tally.user_bytes += n
        moved += n
    return moved, Status.DONE


def _write_once(dst_fd: int, view: memoryview, dst_offset: int | None, moved: int, tally: Tally | None) -> int:
    try:
        n = os.write(dst_fd, view) if dst_offset is None else os.pwrite(dst_fd, view, dst_offset + moved)
    except BlockingIOError:
        n = 0
    if tally is not None:
        tally.add("write" if dst_offset is None else "pwrite64")
        tally.user_bytes += n
    return n
