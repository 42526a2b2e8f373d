"""Route `splice`: splice(2) (Linux 2.6.17) moves page references through a pipe, so bytes never enter user
space. One end must be a pipe; otherwise a private pipe, enlarged with F_SETPIPE_SZ, sits in the middle.
This is the socket → file path Java's transferFrom lacks (it copies through an 8 KiB heap buffer).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading

from zcopy import _sys
from zcopy.routes._base import (
    CPU,
    REF,
    CopyModel,
    GiveUp,
    Hop,
    Status,
    Tally,
    build_model,
    give_up_or_raise,
    wait_fd,
    write_all,
)

NAME = "splice"
_FLAGS = _sys.SPLICE_F_MOVE | _sys.SPLICE_F_MORE


def check(src_kind: str, dst_kind: str) -> str | None:
    if not _sys.HAS_SPLICE:
        return "os.splice is not available (needs Python >= 3.10 on Linux)"
    return None


def model(src_kind: str, dst_kind: str) -> CopyModel:
    src_buf = {"file": "page cache", "socket": "socket buffer"}.get(src_kind, "pipe buffer")
    middle: tuple[Hop, ...] = ()
    if src_kind != "pipe":
        middle += (Hop(src_buf, "pipe buffer", REF, "page references"),)
    if dst_kind == "file":
        middle += (Hop("pipe buffer", "page cache", CPU, "in kernel"),)
    elif dst_kind == "socket":
        middle += (Hop("pipe buffer", "socket buffer", REF, "page references"),)
    return build_model(NAME, src_kind, dst_kind, middle, user_space=False)


def _make_pipe(tally: Tally | None) -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    # A smaller pipe still works, only with more calls (e.g. pipe-max-size lowered by the admin).
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, _sys.F_SETPIPE_SZ, _sys.SPLICE_PIPE_SIZE)
    if tally is not None:
        tally.add("pipe2")
        tally.add("fcntl")
    return r, w


# One pipe per thread, kept between calls: a receiver on a socket with a timeout returns here after every
# EAGAIN, and four syscalls to make and drop a pipe each time showed up in its CPU. A pipe is put back only
# empty; one that may hold bytes (an error, or a file source stopped by a full target) is closed instead.
_local = threading.local()


def _take_pipe(tally: Tally | None) -> tuple[int, int]:
    pipe: tuple[int, int] | None = getattr(_local, "pipe", None)
    if pipe is None:
        return _make_pipe(tally)
    _local.pipe = None
    return pipe


def _give_back(pipe: tuple[int, int], empty: bool, tally: Tally | None) -> None:
    if empty and getattr(_local, "pipe", None) is None:
        _local.pipe = pipe
        return
    os.close(pipe[0])
    os.close(pipe[1])
    if tally is not None:
        tally.add("close", 2)


def _is_pipe(fd: int) -> bool:
    return stat.S_ISFIFO(os.fstat(fd).st_mode)


def move(
    src_fd: int, dst_fd: int, offset: int | None, count: int, dst_offset: int | None, tally: Tally | None
) -> tuple[int, Status]:
    if _is_pipe(src_fd) or _is_pipe(dst_fd):
        return _direct(src_fd, dst_fd, offset, count, dst_offset, tally)
    pipe = _take_pipe(tally)
    empty = False
    try:
        moved, status = _through_pipe(src_fd, dst_fd, offset, count, dst_offset, pipe[0], pipe[1], tally)
        # _through_pipe drains the pipe before every return except a file source stopped by a full target.
        empty = status is not Status.DST_AGAIN or offset is None
        return moved, status
    finally:
        _give_back(pipe, empty, tally)


def _direct(
    src_fd: int, dst_fd: int, offset: int | None, count: int, dst_offset: int | None, tally: Tally | None
) -> tuple[int, Status]:
    moved = 0
    while moved < count:
        try:
            n = os.splice(
                src_fd,
                dst_fd,
                min(count - moved, _sys.MAX_CHUNK),
                None if offset is None else offset + moved,
                None if dst_offset is None else dst_offset + moved,
                _FLAGS,
            )
        except BlockingIOError:
            if tally is not None:
                tally.add(NAME)
            # Which side is full/empty is not reported; a pipe target is the usual one to fill up.
            return moved, Status.DST_AGAIN if _is_pipe(dst_fd) else Status.SRC_AGAIN
        except OSError as exc:
            raise give_up_or_raise(exc, moved, "splice refused these fds") from None
        if tally is not None:
            tally.add(NAME)
        if n == 0:
            return moved, Status.EOF
        moved += n
    return moved, Status.DONE


def _through_pipe(
    src_fd: int,
    dst_fd: int,
    offset: int | None,
    count: int,
    dst_offset: int | None,
    r: int,
    w: int,
    tally: Tally | None,
) -> tuple[int, Status]:
    moved = 0
    chunk = _sys.SPLICE_PIPE_SIZE
    while moved < count:
        try:
            src_at = None if offset is None else offset + moved
            got = os.splice(src_fd, w, min(count - moved, chunk), src_at, None, _FLAGS)
        except BlockingIOError:
            if tally is not None:
                tally.add(NAME)
            return moved, Status.SRC_AGAIN
        except OSError as exc:
            raise give_up_or_raise(exc, moved, "splice refused the source") from None
        if tally is not None:
            tally.add(NAME)
        if got == 0:
            return moved, Status.EOF
        # From a stream source these bytes cannot be read again: they must reach the target even if it is full.
        blocked = False
        left = got
        while left:
            try:
                n = os.splice(r, dst_fd, left, None, None if dst_offset is None else dst_offset + moved, _FLAGS)
            except BlockingIOError:
                if tally is not None:
                    tally.add(NAME)
                if offset is not None:
                    # A file source loses nothing: the caller closes this pipe, discarding what the target
                    # could not take, and a later call re-reads from the returned position.
                    return moved, Status.DST_AGAIN
                blocked = True
                wait_fd(dst_fd, True, None)
                continue
            except OSError as exc:
                if moved == 0 and left == got:
                    if offset is not None:  # a file source: the next route simply re-reads from offset
                        raise give_up_or_raise(exc, 0, "splice refused the target") from None
                    # A stream source: these bytes cannot be put back, so deliver them before giving up.
                    refusal = give_up_or_raise(exc, 0, "splice refused the target")
                    raise GiveUp(refusal.reason, salvaged=_drain(r, dst_fd, got, dst_offset, tally)) from None
                exc.bytes_moved = moved  # type: ignore[attr-defined]
                raise
            if tally is not None:
                tally.add(NAME)
            left -= n
            moved += n
        if blocked:
            return moved, Status.DST_AGAIN
    return moved, Status.DONE


def _drain(r: int, dst_fd: int, n: int, dst_offset: int | None, tally: Tally | None) -> int:
    data = os.read(r, n)
    if tally is not None:
        tally.add("read")
        tally.user_bytes += 2 * len(data)
    return write_all(dst_fd, memoryview(data), dst_offset, tally)


__all__ = ["NAME", "GiveUp", "check", "model", "move"]
