"""What every route shares: the copy model as data, the give-up signal, the syscall tally and the loop status.

A route module exposes NAME, ``check(src_kind, dst_kind) -> str | None`` (why it cannot serve that pair, or None)
and ``move(src_fd, dst_fd, offset, count, dst_offset, tally) -> tuple[int, Status]``.
"""

from __future__ import annotations

import enum
import errno
import os
import select

from zcopy import _sys
from zcopy._record import Record


class Status(enum.Enum):
    DONE = "done"  # count bytes moved
    EOF = "eof"  # the source had no more bytes
    SRC_AGAIN = "src_again"  # non-blocking source has nothing now (EAGAIN)
    DST_AGAIN = "dst_again"  # non-blocking target is full now (EAGAIN)


class GiveUp(Exception):
    """Private: this route cannot move these fds, and no byte has moved yet, so the next route may try."""

    def __init__(self, reason: str, salvaged: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        # Bytes a route had already taken from a stream source and delivered by a plain write before giving up
        # (they could not be put back); the next route continues after them.
        self.salvaged = salvaged


def give_up_or_raise(exc: OSError, moved: int, what: str) -> GiveUp:
    """Turn an OSError into GiveUp when nothing moved and the errno means "cannot do this pair"; else re-raise."""
    if moved == 0 and exc.errno in _sys.GIVE_UP_ERRNOS:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return GiveUp(f"{name}, {_WHY.get(exc.errno or 0, what)}")
    exc.bytes_moved = moved  # type: ignore[attr-defined]
    raise exc


# What each give-up errno usually means for these syscalls (man 2 sendfile/splice/copy_file_range).
_WHY = {
    errno.EXDEV: "source and target are on different filesystems",
    errno.EINVAL: "the kernel refused this pair (e.g. a procfs/FUSE source, an O_APPEND target)",
    errno.ENOSYS: "this kernel does not implement the system call",
    errno.EOPNOTSUPP: "the filesystem does not support it",
    errno.ENOTSOCK: "an end is not a socket",
}


class Tally(Record):
    """Syscalls by name and bytes that crossed the user/kernel boundary. Only allocated while observing."""

    __slots__ = ("syscalls", "user_bytes")

    def __init__(self) -> None:
        self.syscalls: dict[str, int] = {}
        self.user_bytes = 0

    def add(self, name: str, n: int = 1) -> None:
        self.syscalls[name] = self.syscalls.get(name, 0) + n


def wait_fd(fd: int, writable: bool, timeout: float | None) -> None:
    """Block until fd is readable/writable; TimeoutError after timeout seconds (None: forever)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if writable else select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    if not poller.poll(ms):
        raise TimeoutError(errno.ETIMEDOUT, f"fd {fd} not {'writable' if writable else 'readable'} in {timeout}s")


def write_all(dst_fd: int, view: memoryview, dst_offset: int | None, tally: Tally | None) -> int:
    """Write the whole view (blocking semantics: waits on EAGAIN because these bytes already left the source)."""
    done = 0
    total = len(view)
    while done < total:
        try:
            if dst_offset is None:
                n = os.write(dst_fd, view[done:])
                if tally is not None:
                    tally.add("write")
            else:
                n = os.pwrite(dst_fd, view[done:], dst_offset + done)
                if tally is not None:
                    tally.add("pwrite64")
        except BlockingIOError:
            wait_fd(dst_fd, True, None)
            continue
        done += n
    return done


# --- copy models -------------------------------------------------------------------------------------------

DMA, CPU, REF = "DMA", "CPU", "ref"  # REF: only page references/descriptors move (no byte copied)


class Hop(Record):
    """One arrow of the article's diagrams: bytes (or only page references) going from src to dst."""

    __slots__ = ("dst", "kind", "note", "src")

    def __init__(self, src: str, dst: str, kind: str, note: str = "") -> None:
        self.src = src
        self.dst = dst
        self.kind = kind  # DMA, CPU or ref
        self.note = note  # e.g. "in kernel"


class CopyModel(Record):
    """The article's diagram for one route between two endpoint kinds, as data."""

    __slots__ = ("hops", "route", "user_space")

    def __init__(self, route: str, hops: tuple[Hop, ...], user_space: bool) -> None:
        self.route = route
        self.hops = hops
        self.user_space = user_space  # do the bytes pass through a user-space buffer?

    @property
    def cpu_copies(self) -> int:
        return sum(1 for h in self.hops if h.kind == CPU)

    @property
    def user_crossings(self) -> int:
        """How many times each byte enters or leaves user space (readwrite: in and out, 2; mmap: 1)."""
        return sum(1 for h in self.hops if "user" in h.src or "user" in h.dst)

    @property
    def dma_copies(self) -> int:
        return sum(1 for h in self.hops if h.kind == DMA)

    def render(self) -> str:
        """`disk ─DMA→ page cache ─CPU→ user buffer ─CPU→ socket buffer ─DMA→ NIC`"""
        parts = [self.hops[0].src] if self.hops else []
        for h in self.hops:
            label = h.kind if not h.note else f"{h.kind} {h.note}"
            parts.append(f"─{label}→ {h.dst}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "route": self.route,
            "line": self.render(),
            "cpu_copies": self.cpu_copies,
            "dma_copies": self.dma_copies,
            "user_space": self.user_space,
            "hops": [{"from": h.src, "to": h.dst, "kind": h.kind, "note": h.note} for h in self.hops],
        }


# Where bytes enter and leave the kernel for each endpoint kind (the article's layers).
SOURCE_HOPS: dict[str, tuple[Hop, ...]] = {
    "file": (Hop("disk", "page cache", DMA),),
    "socket": (Hop("NIC", "socket buffer", DMA),),
    "pipe": (),
    "other": (),
}
SOURCE_BUFFER = {"file": "page cache", "socket": "socket buffer", "pipe": "pipe buffer", "other": "device"}
TARGET_BUFFER = SOURCE_BUFFER
TARGET_HOPS: dict[str, tuple[Hop, ...]] = {
    "file": (Hop("page cache", "disk", DMA, "at writeback"),),
    "socket": (Hop("socket buffer", "NIC", DMA),),
    "pipe": (),
    "other": (),
}


def build_model(route: str, src_kind: str, dst_kind: str, middle: tuple[Hop, ...], user_space: bool) -> CopyModel:
    """Source layers + the route's own hops between the two kernel buffers + target layers."""
    return CopyModel(route, SOURCE_HOPS.get(src_kind, ()) + middle + TARGET_HOPS.get(dst_kind, ()), user_space)
