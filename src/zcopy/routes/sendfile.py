"""Route `sendfile`: sendfile(2) moves page-cache pages to the target inside the kernel (Linux 2.2; any target fd
since 2.6.33). The article's `transferTo`: to a socket no byte is copied by the CPU (the NIC gathers the pages).
"""

from __future__ import annotations

import os

from zcopy import _sys
from zcopy.routes._base import CPU, REF, CopyModel, GiveUp, Hop, Status, Tally, build_model, give_up_or_raise

NAME = "sendfile"


def check(src_kind: str, dst_kind: str) -> str | None:
    if not _sys.HAS_SENDFILE:
        return "os.sendfile is not available on this platform"
    if src_kind != "file":
        return f"sendfile needs a source that can be mapped (a regular file); the source is a {src_kind}"
    return None


def model(src_kind: str, dst_kind: str) -> CopyModel:
    if dst_kind == "socket":
        middle = (Hop("page cache", "socket buffer", REF, "page references; NIC gathers by SG-DMA"),)
    else:
        middle = (Hop("page cache", _dst_buffer(dst_kind), CPU, "in kernel"),)
    return build_model(NAME, src_kind, dst_kind, middle, user_space=False)


def _dst_buffer(kind: str) -> str:
    return {"file": "page cache", "pipe": "pipe buffer"}.get(kind, kind)


def move(
    src_fd: int, dst_fd: int, offset: int | None, count: int, dst_offset: int | None, tally: Tally | None
) -> tuple[int, Status]:
    if offset is None:
        raise GiveUp("sendfile needs a source offset (a regular file)")
    if dst_offset is not None:
        # sendfile writes at the target's file position; emulate pwrite-like semantics around it.
        return _move_at(src_fd, dst_fd, offset, count, dst_offset, tally)
    moved = 0
    while moved < count:
        try:
            n = os.sendfile(dst_fd, src_fd, offset + moved, min(count - moved, _sys.MAX_CHUNK))
        except BlockingIOError:
            if tally is not None:
                tally.add(NAME)
            return moved, Status.DST_AGAIN
        except OSError as exc:
            raise give_up_or_raise(exc, moved, "sendfile refused these fds") from None
        if tally is not None:
            tally.add(NAME)
        if n == 0:
            return moved, Status.EOF
        moved += n
    return moved, Status.DONE


def _move_at(
    src_fd: int, dst_fd: int, offset: int, count: int, dst_offset: int, tally: Tally | None
) -> tuple[int, Status]:
    saved = os.lseek(dst_fd, 0, os.SEEK_CUR)
    try:
        os.lseek(dst_fd, dst_offset, os.SEEK_SET)
        return move(src_fd, dst_fd, offset, count, None, tally)
    finally:
        os.lseek(dst_fd, saved, os.SEEK_SET)
        if tally is not None:
            tally.add("lseek", 3)
