"""Route `direct`: O_DIRECT I/O through one page-aligned user buffer, so a file end skips the page cache and the
disk DMAs straight into (or out of) user memory. File → file has no CPU copy at all: `disk ─DMA→ user buffer
─DMA→ disk`. A socket or pipe end is read or written with an ordinary call (one CPU copy into the buffer).

O_DIRECT wants the buffer address, the file offset and the length aligned (aligned.dio_alignment). The buffer is
page-aligned; file offsets are handled in three parts per call: an unaligned head up to the first aligned offset
and the tail shorter than one block go through the page cache (buffered pread/pwrite), the aligned body goes by
DMA. O_DIRECT is switched on for the call with fcntl(F_SETFL) on the caller's fds (and off around the buffered
parts), and the flags are put back as found before returning, whatever happened.

Into a file the writes overlap the reads: the caller's thread reads block n+1 (from the source file by DMA, or from
the socket) while a helper thread (routes.direct_writer) has the disk DMA block n out of the other buffer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from collections.abc import Callable
from typing import NamedTuple

from zcopy import _sys
from zcopy.aligned import aligned_buffer, dio_alignment, page_cache_fs
from zcopy.routes import direct_writer
from zcopy.routes._base import CPU, DMA, CopyModel, GiveUp, Hop, Status, Tally, wait_fd
from zcopy.routes.direct_writer import DirectWriter

NAME = "direct"

# Bytes per O_DIRECT request and buffers in flight (routes.direct_writer): chosen by bench/direct.py's sweep on this
# machine, the numbers in docs/architecture.md ("The direct route").
CHUNK = direct_writer.CHUNK
DEPTH = direct_writer.DEPTH

# From a socket or pipe too, the O_DIRECT write of one piece overlaps the receive of the next (a helper thread).
# Runs of bench/direct.py disagreed here ("socket → new file", both ways side by side): the socket buffer keeps
# filling during a write anyway, and on a loaded VM the helper's hand-offs sometimes cost more than they hid; the
# newest run (docs/benchmarks.md) has the overlap ahead on wall at the same CPU, so it is on.
STREAM_OVERLAP = True

# A socket or pipe source fills only this much of the buffer before each O_DIRECT write: 2 MiB, so the bytes the
# recv copy just wrote are still in the CPU cache when the disk's DMA reads them, and the socket keeps filling while
# a shorter write runs. (Chosen by an earlier hand sweep of 1, 2 and 8 MiB whose script is not in the repo; the
# repo's measure of this path is bench/direct.py's "socket → new file" section.)
STREAM_CHUNK = 2 << 20

# Selection (zcopy.copy / zcopy cp, read_file): direct only for a source at least this big and less than this
# fraction in the page cache. Below 32 MiB a cold copy through the page cache finishes (into dirty pages, written
# back later) before the direct route's synchronous writes would, and there is little CPU to save; a source half
# cached is read faster from memory than from the disk.
THRESHOLD = 32 << 20
CACHED_FRACTION = 0.5


class Measured(NamedTuple):
    """What whole durable cold copies achieved between two file systems here (zcopy.diskrates): bytes/s by direct
    and through the page cache (`via`: the route measured), None where not measured (or too long ago), and the age
    of each in seconds."""

    direct_bps: float | None
    cache_bps: float | None
    direct_age: float = 0.0
    cache_age: float = 0.0
    via: str = "copy_file_range"


def choose(
    size: int, cached: float | None, threshold: int = THRESHOLD, measured: Measured | None = None,
    explore: bool = False,
) -> tuple[bool, str]:  # fmt: skip
    """Pure: should a whole-file copy of `size` bytes, `cached` of it in the page cache (None: unknown), go by
    direct rather than copy_file_range? `measured`: what each achieved here; `explore`: this copy is large enough
    to measure a route not measured yet (direct first, then the page cache). Returns the decision and the sentence
    explaining it."""
    mib = size / (1 << 20)
    if size < threshold:
        return False, (f"the source is {mib:.1f} MiB, below the direct threshold ({threshold >> 20} MiB): "
                       "through the page cache it is done sooner")  # fmt: skip
    if cached is None:
        return False, "whether the source is in the page cache is unknown (no mincore): the in-kernel copy is safe"
    if cached >= CACHED_FRACTION:
        return False, (f"{cached:.0%} of the source is in the page cache: copying it from memory beats "
                       "reading the disk again")  # fmt: skip
    cold = f"the source is {mib:.0f} MiB and {cached:.0%} of it is in the page cache"
    dma = "the disk DMAs it into a user buffer and out to the target, with no CPU copy and no page-cache pages"
    m = measured if measured is not None else Measured(None, None)

    def rate(bps: float, age: float) -> str:
        return f"{bps / (1 << 20):.0f} MiB/s, measured {age:.0f} s ago"

    if m.direct_bps is None:
        return True, f"{cold}: {dma} ({'measuring it on this copy' if explore else 'not measured here yet'})"
    direct_rate = f"direct {rate(m.direct_bps, m.direct_age)}"
    if m.cache_bps is None:
        if explore:
            return False, (f"{cold}; durable cold copies here: {direct_rate}; the page cache is not measured yet: "
                           f"this copy measures it ({m.via} + fdatasync)")  # fmt: skip
        return True, f"{cold}: {dma} ({direct_rate}; the page cache not measured yet)"
    rates = f"{direct_rate}, {m.via} + fdatasync {rate(m.cache_bps, m.cache_age)}"
    if m.direct_bps >= m.cache_bps:
        return True, f"{cold}; durable cold copies are faster by direct here ({rates}): {dma}"
    return False, f"{cold}, but durable cold copies are faster through the page cache here ({rates})"


def refusal(fd: int) -> str | None:
    """Why O_DIRECT on this open regular file cannot (or should not) be used, or None: the platform has no O_DIRECT,
    the file system keeps files in the page cache, reports no direct I/O, or wants more than page alignment."""
    if not _sys.HAS_O_DIRECT:
        return "O_DIRECT is not available on this platform"
    kind = page_cache_fs(fd)
    if kind is not None:
        return (f"{kind} keeps files in the page cache: O_DIRECT there (refused, or accepted since Linux 6.6 "
                "and served from the same pages) has no disk DMA to gain")  # fmt: skip
    need = dio_alignment(fd)
    if need.offset == 0:
        return "the file system reports no direct I/O for this file (statx dio_offset_align 0)"
    if need.memory > _sys.PAGE_SIZE:
        return f"O_DIRECT here needs memory aligned to {need.memory} bytes, more than a page"
    return None


# The user's callback for each piece of data read into the aligned buffer (see FileChannel.transfer_from).
ChunkHook = Callable[[memoryview], None]

_local = threading.local()


def check(src_kind: str, dst_kind: str) -> str | None:
    if not _sys.HAS_O_DIRECT:
        return "O_DIRECT is not available on this platform"
    if src_kind != "file" and dst_kind != "file":
        return f"direct needs a regular file at one end at least; this is {src_kind} → {dst_kind}"
    return None


_INTO = {"socket": "socket buffer", "pipe": "pipe buffer"}


def model(src_kind: str, dst_kind: str) -> CopyModel:
    """file → file `disk ─DMA→ user buffer ─DMA→ disk`; socket → file `NIC ─DMA→ socket buffer ─CPU→ user buffer
    ─DMA→ disk`; file → memory (read_file) `disk ─DMA→ user buffer`."""
    hops: tuple[Hop, ...]
    if src_kind == "file":
        hops = (Hop("disk", "user buffer", DMA, "O_DIRECT read"),)
    elif src_kind == "socket":
        hops = (Hop("NIC", "socket buffer", DMA), Hop("socket buffer", "user buffer", CPU, "recv"))
    else:
        hops = (Hop(_INTO.get(src_kind, src_kind), "user buffer", CPU, "read"),)
    if dst_kind == "file":
        hops += (Hop("user buffer", "disk", DMA, "O_DIRECT write"),)
    elif dst_kind == "socket":
        hops += (Hop("user buffer", "socket buffer", CPU, "send"), Hop("socket buffer", "NIC", DMA))
    elif dst_kind != "memory":
        hops += (Hop("user buffer", _INTO.get(dst_kind, dst_kind), CPU, "write"),)
    return CopyModel(NAME, hops, user_space=True)


def _buffer() -> memoryview:
    buf: memoryview | None = getattr(_local, "buf", None)
    if buf is None:
        buf = aligned_buffer(CHUNK)
        _local.buf = buf
    return buf


def _refusal(exc: OSError, what: str) -> GiveUp:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return GiveUp(f"{name}, {what}")


class _Mover:
    """One call of the route: the two fds, what O_DIRECT needs on them, and the bytes moved so far."""

    def __init__(
        self, src_fd: int, dst_fd: int, offset: int | None, dst_offset: int | None, tally: Tally | None,
        hook: ChunkHook | None,
    ) -> None:  # fmt: skip
        self.src, self.dst = src_fd, dst_fd
        self.offset, self.dst_offset = offset, dst_offset
        self.tally = tally
        self.hook = hook
        self.src_file = offset is not None  # routes.move gives an offset exactly when the source is a file
        self.dst_file = stat.S_ISREG(os.fstat(dst_fd).st_mode)
        self.moved = 0
        self.align = 1
        self.flags: dict[int, int] = {}  # fd → flags as found
        self.direct_on: dict[int, bool] = {}
        self.writer: DirectWriter | None = None  # into a file: the overlapped O_DIRECT writer
        self.sparse = False  # skip the source's holes (SEEK_DATA/SEEK_HOLE) instead of reading and writing zeros
        self.src_pos = -1  # the source fd's file position, put back after SEEK_DATA/SEEK_HOLE moved it

    def _add(self, name: str, user: int = 0) -> None:
        if self.tally is not None:
            self.tally.add(name)
            self.tally.user_bytes += user

    # -- preparing: every refusal happens here, before any byte moves ----------------------------------------
    def prepare(self) -> None:
        if not self.src_file and not self.dst_file:
            raise GiveUp("direct needs a regular file at one end at least")
        ends = [fd for fd, is_file in ((self.src, self.src_file), (self.dst, self.dst_file)) if is_file]
        for fd in ends:
            why = refusal(fd)
            if why is not None:
                raise GiveUp(why)
            self.align = max(self.align, dio_alignment(fd).offset)
        if self.dst_file:
            flags = fcntl.fcntl(self.dst, fcntl.F_GETFL)
            if flags & os.O_APPEND:
                raise GiveUp("an O_APPEND target: O_DIRECT writes need an aligned offset the kernel may not move")
        if self.src_file and self.dst_file and self.hook is None and self.dst_offset is not None:
            src_st, dst_st = os.fstat(self.src), os.fstat(self.dst)
            # Fewer blocks than bytes: holes (or compression). Skipping them is safe only where the target has no
            # data yet (beyond its end, reading as zeros); an on_chunk hook must see every byte, zeros included.
            self.sparse = src_st.st_blocks * 512 < src_st.st_size and self.dst_offset >= dst_st.st_size
            if self.sparse:
                self.src_pos = os.lseek(self.src, 0, os.SEEK_CUR)
        for fd in ends:
            self.flags[fd] = fcntl.fcntl(fd, fcntl.F_GETFL)
            self.direct_on[fd] = bool(self.flags[fd] & _sys.O_DIRECT)
            try:
                self._direct(fd, True)
            except OSError as exc:
                raise _refusal(exc, "the file system does not support O_DIRECT (e.g. ramfs, procfs, FUSE)") from None

    def _direct(self, fd: int, on: bool) -> None:
        if self.direct_on[fd] == on:
            return
        flags = self.flags[fd] & ~_sys.O_DIRECT
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _sys.O_DIRECT if on else flags)
        self._add("fcntl")
        self.direct_on[fd] = on

    def restore(self) -> None:
        """Put every fd's flags back as they were found (a channel opened direct=True stays direct), and the
        source's file position if hole seeking moved it."""
        if self.src_pos >= 0:
            os.lseek(self.src, self.src_pos, os.SEEK_SET)
        for fd, flags in self.flags.items():
            if self.direct_on.get(fd) != bool(flags & _sys.O_DIRECT):
                try:
                    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
                except OSError:  # closed by another thread meanwhile: nothing left to restore
                    continue
                self._add("fcntl")

    # -- reading into the buffer ---------------------------------------------------------------------------
    def _read(self, view: memoryview, direct: bool) -> tuple[int, Status]:
        """Fill view from the source: a file by one pread (direct or not), a stream until full, EOF or EAGAIN."""
        if self.src_file:
            assert self.offset is not None
            self._direct(self.src, direct)
            try:
                got = os.preadv(self.src, [view], self.offset + self.moved)
            except OSError as exc:
                raise self._fail(exc, "the file system refused an aligned O_DIRECT read") from None
            self._add("preadv2", 0 if direct else got)
            return got, Status.DONE if got == len(view) else Status.EOF
        got = 0
        while got < len(view):
            try:
                n = os.readv(self.src, [view[got:]])
            except BlockingIOError:
                self._add("readv")
                return got, Status.SRC_AGAIN
            self._add("readv", n)
            if n == 0:
                return got, Status.EOF
            got += n
        return got, Status.DONE

    def _fail(self, exc: OSError, what: str) -> OSError | GiveUp:
        """EINVAL on the first request means the alignment was refused: give up while nothing moved."""
        if self.moved == 0 and exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return _refusal(exc, what)
        exc.bytes_moved = self.moved  # type: ignore[attr-defined]
        return exc

    # -- writing from the buffer into a stream -----------------------------------------------------------------
    def _write(self, view: memoryview) -> int:
        """Write all of view to the socket or pipe target; returns the bytes written. Fewer than len(view): a
        non-blocking target filled up (only with a file source, which loses nothing: the caller re-reads from the
        returned offset)."""
        done = 0
        total = len(view)
        while done < total:
            try:
                n = os.write(self.dst, view[done:])
            except BlockingIOError:
                self._add("write")
                if self.src_file:
                    return done
                wait_fd(self.dst, True, None)  # bytes of a stream source must be delivered
                continue
            self._add("write", n)
            done += n
            self.moved += n
        return done

    # -- the loop ------------------------------------------------------------------------------------------
    def _holes(self, left: int) -> tuple[int, int, bool]:
        """(hole bytes at the current source offset to skip, data bytes after them, source ended) within left."""
        assert self.offset is not None
        pos = self.offset + self.moved
        try:
            data = os.lseek(self.src, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            # No data after pos: a trailing hole, or the file ended (shrank) before pos.
            size = os.fstat(self.src).st_size
            return min(left, max(0, size - pos)), 0, size - pos < left
        finally:
            self._add("lseek")
        hole = min(data - pos, left)
        if hole == left:
            return hole, 0, False
        end = os.lseek(self.src, data, os.SEEK_HOLE)
        self._add("lseek")
        return hole, min(end - data, left - hole), False

    def _extend(self) -> None:
        """A skipped trailing hole: make the target as long as what was moved (the new bytes read as zeros)."""
        if self.sparse and self.dst_offset is not None:
            end = self.dst_offset + self.moved
            if os.fstat(self.dst).st_size < end:
                os.ftruncate(self.dst, end)
                self._add("ftruncate")

    def run(self, count: int) -> tuple[int, Status]:
        try:
            if not self.dst_file:
                return self._into_stream(count)
            result = self._into_file(count)
            err = self._close_writer()
            if err is not None:
                raise err
            return result
        except BaseException as exc:
            self._close_writer()
            if self.writer is not None and not isinstance(exc, GiveUp):
                # What is on the disk: the pieces the helper wrote, in order (not what was read ahead of them).
                assert self.dst_offset is not None
                self.moved = 0 if self.writer.reached is None else self.writer.reached - self.dst_offset
                if isinstance(exc, OSError):
                    exc.bytes_moved = self.moved  # type: ignore[attr-defined]
            raise
        finally:
            self._extend()

    def _close_writer(self) -> BaseException | None:
        """Join the writer's helper (always), take over its flag state and counts; its pending error, if any."""
        w = self.writer
        if w is None or w.closed:
            return None
        err = w.finish()
        self.direct_on[self.dst] = w.direct_on
        if self.tally is not None:
            for name, n in w.tally.syscalls.items():
                self.tally.add(name, n)
            self.tally.user_bytes += w.tally.user_bytes
        return err

    def _into_file(self, count: int) -> tuple[int, Status]:
        """Into a file: read each piece into a free buffer of the writer, which DMAs it out while the next is read."""
        a = self.align
        assert self.dst_offset is not None
        self.writer = w = DirectWriter(
            self.dst, chunk=CHUNK if self.src_file else STREAM_CHUNK, depth=DEPTH, align=a, salvage=not self.src_file,
            restore=False, overlap=self.src_file or STREAM_OVERLAP,
        )  # fmt: skip
        # A file source read by DMA must sit at the same offset within a block as the target.
        congruent = not self.src_file or (self.offset or 0) % a == self.dst_offset % a
        while self.moved < count:
            left = count - self.moved
            if self.sparse:
                hole, left, ended = self._holes(left)
                self.moved += hole
                if ended:
                    return self.moved, Status.EOF
                if left == 0:
                    continue
            pos = self.dst_offset + self.moved
            view = w.buffer(pos, left)
            if pos % a or len(view) < a:
                # The head up to the next aligned offset, or the final partial block: through the page cache.
                got, status = self._read(view, False)
            else:
                view = view[: len(view) // a * a]
                got, status = self._read(view, congruent)
            if got and self.hook is not None:
                self.hook(view[:got])
            w.submit(view[:got], pos)
            self.moved += got
            if w.refused is not None:
                # Bytes of a stream source cannot be put back: the writer delivered them through the page cache;
                # the next route continues after them.
                raise GiveUp(w.refused, salvaged=self.moved)
            if status is not Status.DONE:
                return self.moved, status
        return self.moved, Status.DONE

    def _into_stream(self, count: int) -> tuple[int, Status]:
        """A file source into a socket or pipe: O_DIRECT read, then an ordinary write (one buffer, one thread)."""
        assert self.offset is not None
        a = self.align
        buf = _buffer()
        while self.moved < count:
            left = count - self.moved
            mis = (self.offset + self.moved) % a
            if mis or left < a:
                want = min(left, a - mis) if mis else left
                got, status = self._read(buf[:want], False)
            else:
                got, status = self._read(buf[: min(left, len(buf)) // a * a], True)
            if got:
                # The target may take only part, and the next call reads the rest again, so the hook sees only
                # what was written (after the write) to see every byte once.
                delivered = self._write(buf[:got])
                if self.hook is not None and delivered:
                    self.hook(buf[:delivered])
                if delivered < got:
                    return self.moved, Status.DST_AGAIN
            if status is not Status.DONE:
                return self.moved, status
        return self.moved, Status.DONE


def move(
    src_fd: int, dst_fd: int, offset: int | None, count: int, dst_offset: int | None, tally: Tally | None,
    on_chunk: ChunkHook | None = None,
) -> tuple[int, Status]:  # fmt: skip
    m = _Mover(src_fd, dst_fd, offset, dst_offset, tally, on_chunk)
    at_position = m.dst_file and dst_offset is None
    if at_position:
        # Write at the target's file position and advance it, as write(2) would.
        m.dst_offset = os.lseek(dst_fd, 0, os.SEEK_CUR)
    m.prepare()
    try:
        return m.run(count)
    except OSError as exc:
        if not hasattr(exc, "bytes_moved"):
            exc.bytes_moved = m.moved  # type: ignore[attr-defined]
        raise
    finally:
        m.restore()
        if at_position and m.dst_offset is not None:
            os.lseek(dst_fd, m.dst_offset + m.moved, os.SEEK_SET)


__all__ = [
    "CACHED_FRACTION", "CHUNK", "DEPTH", "NAME", "STREAM_CHUNK", "STREAM_OVERLAP", "THRESHOLD", "ChunkHook", "Measured",
    "check", "choose", "model", "move", "refusal",
]
