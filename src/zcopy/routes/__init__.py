"""Moving bytes between two fds by the best route that works, and saying which one did.

`move()` classifies both ends, walks the selection table (routes.table), lets a route give up only before any
byte moved, turns a source that shrank into TruncatedFileError, and reports the operation to `observe`.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from types import ModuleType

from zcopy import observe as _observe
from zcopy._record import Record
from zcopy.errors import RouteUnavailable, TruncatedFileError
from zcopy.routes import copy_file_range, direct, readwrite, sendfile, splice, table
from zcopy.routes import mmap as mmap_route
from zcopy.routes._base import CPU, DMA, REF, CopyModel, GiveUp, Hop, Status, Tally, wait_fd
from zcopy.routes.direct_writer import DirectWriter

_MODULES: dict[str, ModuleType] = {
    m.NAME: m for m in (sendfile, splice, copy_file_range, mmap_route, direct, readwrite)
}
# Routes whose bytes pass through a user buffer, so they can show each piece to an `on_chunk` callback.
_HOOKED = frozenset({direct.NAME, readwrite.NAME})

ROUTES = table.ROUTES

# route name → model(src_kind, dst_kind) -> CopyModel
COPY_MODELS: dict[str, Callable[[str, str], CopyModel]] = {name: m.model for name, m in _MODULES.items()}


def copy_model(route: str, src_kind: str, dst_kind: str) -> CopyModel:
    return COPY_MODELS[route](src_kind, dst_kind)


class Moved(Record):
    """What a move did: bytes, the route that moved them, the routes skipped first (and why)."""

    __slots__ = ("dst_kind", "nbytes", "reason", "route", "skipped", "src_kind", "status", "syscalls", "user_bytes")

    def __init__(
        self,
        nbytes: int,
        route: str,
        skipped: list[tuple[str, str]] | None = None,
        syscalls: dict[str, int] | None = None,
        user_bytes: int = 0,
        status: str = "done",
        src_kind: str = "",
        dst_kind: str = "",
        reason: str | None = None,
    ) -> None:
        self.nbytes = nbytes
        self.route = route
        self.skipped = skipped if skipped is not None else []
        self.syscalls = syscalls if syscalls is not None else {}
        self.user_bytes = user_bytes
        self.status = status  # done | eof | src_again | dst_again
        self.src_kind = src_kind
        self.dst_kind = dst_kind
        self.reason = reason  # why this route was chosen, when a selection (not the table order) chose it


def kind_of_mode(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "pipe"
    return "other"


def kind_of(fd: int) -> str:
    return kind_of_mode(os.fstat(fd).st_mode)


def plan(
    src_kind: str,
    dst_kind: str,
    route: str | None = None,
    fallback: bool = True,
    *,
    prefer: str | None = None,
    hooked: bool = False,
) -> list[tuple[str, str | None]]:
    """The routes move() would try, each with the reason it cannot serve this pair (None: it may).
    `prefer` puts one route before the table's order; `hooked` (an on_chunk callback) rules out the routes that
    never bring the bytes into user space."""
    for name in (route, prefer):
        if name is not None and name not in _MODULES:
            raise ValueError(f"unknown route {name!r}; choose from {', '.join(ROUTES)}")
    if route is not None:
        names: tuple[str, ...] = (route,)
    else:
        names = table.order(src_kind, dst_kind)
        if prefer is not None:
            names = (prefer, *(n for n in names if n != prefer))
        if not fallback:
            names = names[:1]
    out: list[tuple[str, str | None]] = []
    for n in names:
        why = _MODULES[n].check(src_kind, dst_kind)
        if why is None and hooked and n not in _HOOKED:
            why = f"on_chunk needs the bytes in a user buffer; {n} moves them inside the kernel"
        out.append((n, why))
    return out


def direct_refusal(fd: int) -> str | None:
    """Why the direct route cannot (or should not) write or read this open regular file, or None when it can
    (routes.direct.refusal: no O_DIRECT here, a page-cache file system, no direct I/O reported)."""
    return direct.refusal(fd)


def require(route: str | None, src_kind: str, dst_kind: str) -> None:
    """Check a forced route up front (before a session starts): ValueError for an unknown name,
    RouteUnavailable naming why it cannot move src_kind → dst_kind. None (no forcing) always passes."""
    if route is None:
        return
    reason = plan(src_kind, dst_kind, route=route)[0][1]
    if reason is not None:
        raise RouteUnavailable(route, reason)


def move(
    src_fd: int,
    dst_fd: int,
    offset: int | None,
    count: int,
    *,
    route: str | None = None,
    fallback: bool = True,
    dst_offset: int | None = None,
    name: str | None = None,
    op: str = "move",
    timeout: float | None = None,
    wait: bool = False,
    prefer: str | None = None,
    on_chunk: Callable[[memoryview], None] | None = None,
    reason: str | None = None,
) -> Moved:
    """Move up to `count` bytes from src_fd (at `offset`, or its file position when None) to dst_fd (at
    `dst_offset`, or its position/stream when None).

    Stops at `count`, at the source's end, or — for non-blocking fds unless `wait` — when an fd would block.
    `route` forces one route (no fallback); `fallback=False` allows only the table's first choice. Either raises
    RouteUnavailable when impossible. A regular-file source that shrinks mid-way raises TruncatedFileError.
    An OSError after partial progress carries `bytes_moved`.
    `prefer` tries one route before the table's order (a selection's choice; `reason` says why, kept in Moved).
    `on_chunk(view)` sees every piece of data once, in order, in the route's user buffer, before it is written (only
    routes with a user buffer can: direct, readwrite); from a file into a socket or pipe, which may take only part,
    it sees what was written, just after. The view is valid only during the call.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    pending = _observe.begin()
    tally = Tally() if pending is not None else None
    src_st = os.fstat(src_fd)
    src_kind = kind_of_mode(src_st.st_mode)
    dst_kind = kind_of(dst_fd)
    if tally is not None:
        tally.add("fstat", 2)
    label = name or f"fd:{src_fd}"
    use_position = src_kind == "file" and offset is None
    if use_position:
        offset = os.lseek(src_fd, 0, os.SEEK_CUR)
    if offset is not None and offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    # Java's transferTo contract: a regular file moves at most size - position bytes. Size 0 also describes
    # procfs/sysfs files that do have data: one pread of a byte tells them from an empty file, which then moves
    # nothing by the first route (procfs-like ones are read until EOF).
    sized = src_kind == "file" and src_st.st_size > 0
    if sized and offset is not None:
        count = max(0, min(count, src_st.st_size - offset))
    elif src_kind == "file" and offset is not None and count > 0 and _empty_at(src_fd, offset, tally):
        count = 0
    candidates = plan(src_kind, dst_kind, route, fallback, prefer=prefer, hooked=on_chunk is not None)
    skipped: list[tuple[str, str]] = []
    moved = 0
    status = Status.DONE
    used = candidates[-1][0] if candidates else "readwrite"
    for rname, refusal in candidates:
        if refusal is not None:
            skipped.append((rname, refusal))
            continue
        used = rname
        try:
            moved, status = _run(
                _MODULES[rname], src_fd, dst_fd, offset, count, dst_offset, tally, moved, wait, timeout, on_chunk
            )
        except GiveUp as g:
            skipped.append((rname, g.reason))
            moved += g.salvaged
            continue
        break
    else:
        forced = route if route is not None else (candidates[0][0] if candidates else "?")
        why = "; ".join(f"{r}: {w}" for r, w in skipped)
        if route is not None or not fallback:
            raise RouteUnavailable(forced, why)
        raise RouteUnavailable(forced, f"no route could move {src_kind} → {dst_kind}: {why}")
    if use_position and offset is not None:
        os.lseek(src_fd, offset + moved, os.SEEK_SET)
    if status is Status.EOF and sized and offset is not None and moved < count:
        now = os.fstat(src_fd).st_size
        if now < offset + count:
            raise TruncatedFileError(label, offset + moved, offset + count, moved)
    result = Moved(moved, used, skipped, {}, 0, status.value, src_kind, dst_kind, reason)
    if pending is not None and tally is not None:
        result.syscalls = tally.syscalls
        result.user_bytes = tally.user_bytes
        pending.end(op, used, moved, tally.syscalls, tally.user_bytes, skipped)
    return result


def _empty_at(fd: int, offset: int, tally: Tally | None) -> bool:
    """A regular file that reports size 0: True when it has no byte at `offset` (empty), False when it does
    (procfs/sysfs) or cannot say (a source not open for reading: the route will tell)."""
    try:
        data = os.pread(fd, 1, offset)
    except OSError:
        return False
    if tally is not None:
        tally.add("pread64")
    return not data


def _run(
    mod: ModuleType,
    src_fd: int,
    dst_fd: int,
    offset: int | None,
    count: int,
    dst_offset: int | None,
    tally: Tally | None,
    already: int,
    wait: bool,
    timeout: float | None,
    on_chunk: Callable[[memoryview], None] | None = None,
) -> tuple[int, Status]:
    """Run one route to completion; with `wait`, sleep in poll() on EAGAIN instead of returning."""
    moved = already
    extra = {} if on_chunk is None else {"on_chunk": on_chunk}
    while True:
        try:
            n, status = mod.move(
                src_fd,
                dst_fd,
                None if offset is None else offset + moved,
                count - moved,
                None if dst_offset is None else dst_offset + moved,
                tally,
                **extra,
            )
        except GiveUp as g:
            if moved == already:
                raise
            # Progress was made by this route earlier in the call: never switch routes mid-stream.
            err = OSError(errno.EIO, f"route {mod.NAME} failed after {moved} bytes: {g.reason}")
            err.bytes_moved = moved  # type: ignore[attr-defined]
            raise err from None
        moved += n
        if status in (Status.DONE, Status.EOF) or not wait:
            return moved, status
        try:
            wait_fd(dst_fd if status is Status.DST_AGAIN else src_fd, status is Status.DST_AGAIN, timeout)
        except TimeoutError as exc:
            exc.bytes_moved = moved  # type: ignore[attr-defined]
            raise


# GiveUp stays private (in _base): it never leaves move(). CPU/DMA/REF name a copy model's hop kinds.
__all__ = [
    "COPY_MODELS", "CPU", "DMA", "REF", "ROUTES", "CopyModel", "DirectWriter", "Hop", "Moved", "copy_model",
    "direct_refusal", "kind_of", "move", "plan", "require",
]
