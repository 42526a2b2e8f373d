"""Overlapped O_DIRECT writing: the caller fills one page-aligned buffer (a read from a file or a socket) while a
helper thread has the disk DMA the previous one out. The copy model is unchanged (`… → user buffer ─DMA→ disk`);
only the waiting overlaps: os.pwrite releases the GIL, so the fill and the write run at the same time.

One helper thread writes the jobs in the order they were submitted, so the bytes on the disk always form a prefix
of what was submitted (`landed`), which is what an error reports as bytes_moved. Until the first O_DIRECT write has
succeeded on the file, submit() writes synchronously: a file system that accepts the flag and then refuses the
write (EINVAL) is known before the caller reads anything more, so a route can still give up before any byte.
The helper owns the file's O_DIRECT flag while it runs (an unaligned head or a short tail goes through the page
cache with the flag off); close() joins it, always, so no thread outlives the writer.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import os
import threading
from types import TracebackType

from zcopy import _sys
from zcopy.aligned import aligned_buffer, dio_alignment
from zcopy.routes._base import GiveUp, Tally

# Bytes per O_DIRECT request and buffers in flight: chosen by bench/direct.py's sweep (docs/architecture.md).
CHUNK = 8 << 20
DEPTH = 3

THREAD_NAME = "zcopy-direct-writer"

_pool = threading.local()  # per calling thread: chunk size → idle aligned buffers, reused across writers


def _take(chunk: int, n: int) -> list[memoryview]:
    idle: dict[int, list[memoryview]] = _pool.__dict__.setdefault("idle", {})
    have = idle.setdefault(chunk, [])
    out = [have.pop() for _ in range(min(n, len(have)))]
    return out + [aligned_buffer(chunk) for _ in range(n - len(out))]


def _give(chunk: int, bufs: list[memoryview]) -> None:
    _pool.__dict__.setdefault("idle", {}).setdefault(chunk, []).extend(bufs)


class DirectWriter:
    """Writes pieces of one regular file at increasing offsets by O_DIRECT, overlapped with the caller's filling of
    the next buffer. Use as a context manager:

        with DirectWriter(fd) as w:
            view = w.buffer(pos, left)      # a free aligned buffer, cut to what the next piece at pos may carry
            got = fill(view)                # recv_into, preadv, ...
            w.submit(view[:got], pos)       # queued; raises an earlier write's error

    `overlap=False`: every write is made by the caller, in its thread (a socket source: the socket buffer already
    fills while the DMA runs, and a helper thread only added hand-offs; bench/direct.py).
    `salvage=True` (a stream source whose bytes cannot be read again): if the file system refuses the first O_DIRECT
    write, this and every later piece go through the page cache and `refused` says why. `salvage=False`: that
    refusal raises GiveUp when nothing was written yet. Counts go to `tally` (syscalls and bytes the CPU copied).
    """

    def __init__(
        self, fd: int, *, chunk: int = CHUNK, depth: int = DEPTH, align: int | None = None, salvage: bool = False,
        restore: bool = True, overlap: bool = True,
    ) -> None:  # fmt: skip
        if depth < 1 or chunk <= 0:
            raise ValueError(f"depth must be >= 1 and chunk > 0, got {depth} and {chunk}")
        self.fd = fd
        self.align = align or dio_alignment(fd).offset or 4096
        self.chunk = max(self.align, chunk // self.align * self.align)
        self.salvage = salvage
        self.restore = restore
        self.overlap = overlap  # False: every write in the caller's thread (no helper), one buffer is enough
        self.found = fcntl.fcntl(fd, fcntl.F_GETFL)
        self.direct_on = bool(self.found & _sys.O_DIRECT)
        self.tally = Tally()
        self.refused: str | None = None  # why the page cache took over (salvage mode)
        self.proven = False  # an O_DIRECT write succeeded on this file
        self.written = 0  # bytes written so far
        self.start: int | None = None  # file offset of the first piece
        self.reached: int | None = None  # end offset of the last piece fully written (pieces land in order)
        self._bufs = _take(self.chunk, depth if overlap else 1)
        self._by_obj = {id(b.obj): b for b in self._bufs}
        self._free = list(self._bufs)
        self._jobs: collections.deque[tuple[memoryview, memoryview, int] | None] = collections.deque()
        self._cv = threading.Condition()
        self._error: BaseException | None = None  # a helper's error not yet raised to the caller
        self._failed = False  # a helper's write failed: the queued rest is dropped
        self._thread: threading.Thread | None = None
        self.closed = False

    # -- the caller's side --------------------------------------------------------------------------------------
    def buffer(self, pos: int, limit: int) -> memoryview:
        """A free buffer (waits while all are being written), cut to at most `limit` bytes: to the next aligned
        offset when `pos` is not aligned (that head goes through the page cache), else to the chunk size."""
        mis = pos % self.align
        n = min(limit, self.align - mis if mis else self.chunk)
        with self._cv:
            while not self._free and self._error is None:
                self._cv.wait()
            self._check()
            return self._free.pop()[:n]

    def submit(self, view: memoryview, pos: int) -> None:
        """Write `view` (a prefix of a buffer from buffer()) at file offset `pos`; an empty view just frees it."""
        base = self._by_obj[id(view.obj)]
        if self.start is None:
            self.start = pos
        if not view:
            self._release(base)
            return
        if not self.overlap or (not self.proven and self.refused is None):
            try:
                self._write(view, pos)
            finally:
                self._release(base)
            return
        with self._cv:
            self._check()
            self._jobs.append((base, view, pos))
            self._cv.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def landed(self) -> int:
        """Bytes from the first piece's offset to the end of the last piece written (what an error reports)."""
        return 0 if self.start is None or self.reached is None else self.reached - self.start

    def close(self) -> None:
        """Wait for every queued write, stop the helper, put the file's flags back; raise a write's error."""
        err = self.finish()
        if err is not None:
            raise err

    def finish(self) -> BaseException | None:
        """close() that returns the pending error instead of raising it (for a caller already failing)."""
        if self.closed:
            return None
        self.closed = True
        with self._cv:
            self._jobs.append(None)
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.restore:
            self.put_back()
        _give(self.chunk, self._bufs)
        self._bufs, self._free, self._by_obj = [], [], {}
        err, self._error = self._error, None
        return err

    def put_back(self) -> None:
        """The file's O_DIRECT flag as it was found."""
        want = bool(self.found & _sys.O_DIRECT)
        if self.direct_on != want:
            with contextlib.suppress(OSError):  # closed by another thread meanwhile: nothing left to put back
                self._set(want)

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        err = self.finish()
        if err is not None and et is None:
            raise err

    # -- internals ----------------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _release(self, base: memoryview) -> None:
        with self._cv:
            self._free.append(base)
            self._cv.notify_all()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._jobs:
                    self._cv.wait()
                job = self._jobs.popleft()
            if job is None:
                return
            base, view, pos = job
            try:
                if not self._failed:  # after an error the rest is dropped: the file ends at `reached`
                    self._write(view, pos)
            except BaseException as exc:  # handed to the caller's next call
                self._failed = True
                self._error = exc
            finally:
                self._release(base)

    def _set(self, on: bool) -> None:
        flags = self.found & ~_sys.O_DIRECT
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | _sys.O_DIRECT if on else flags)
        self.tally.add("fcntl")
        self.direct_on = on

    def _write(self, view: memoryview, pos: int) -> None:
        """All of view at pos: whole aligned blocks by DMA, an unaligned head or tail through the page cache."""
        a = self.align
        done = 0
        while done < len(view):
            p = pos + done
            rest = view[done:]
            whole = len(rest) // a * a
            direct = self.refused is None and p % a == 0 and done % a == 0 and whole > 0
            part = rest[:whole] if direct else rest[: a - p % a] if p % a else rest
            if self.direct_on != direct:
                self._set(direct)
            try:
                n = os.pwrite(self.fd, part, p)
            except OSError as exc:
                if direct and not self.proven and exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                    reason = f"{name}, the file system refused an aligned O_DIRECT write"
                    if self.salvage:
                        self.refused = reason
                        continue  # this piece and the rest through the page cache
                    if self.written == 0:
                        raise GiveUp(reason) from None
                raise
            self.tally.add("pwrite64")
            if not direct:
                self.tally.user_bytes += n
            else:
                self.proven = True
            done += n
            self.written += n
            self.reached = p + n


__all__ = ["CHUNK", "DEPTH", "THREAD_NAME", "DirectWriter"]
