"""The sending side both responders share (static files in ``conn.py``, ASGI in ``asgi/http.py``): cold-aware.

``sendfile(2)`` of a file that is not in the page cache blocks the calling thread until the disk has delivered; on
a one-loop server that thread serves every other client too. So before a body chunk leaves, ``aio.Outbox`` asks
``resident()`` (``preadv2(RWF_NOWAIT)`` of one byte on the chunk's first and last page: two syscalls, no copy, and
a miss starts the read-ahead at once). A resident chunk goes by sendfile on the loop, as before. A cold one goes
by the same sendfile, run in a ``DiskPool`` thread (nginx ``aio threads``): the route stays ``sendfile``, no byte
crosses user space, and the loop serves everyone else meanwhile.

The pool is bounded (``--disk-threads``, default 32 like nginx's pool): at most that many chunks wait for the
disk at once, each from a different connection (a connection has at most one chunk out). More cold work queues on
the loop, in arrival order; it never blocks hot requests and never drops a connection. A job works on duplicates
of the socket and file descriptors, closed by the job itself: a connection may close (client gone, shutdown)
while its chunk is on the disk without its descriptor numbers being reused under the job.

Under TLS the file bytes are copied anyway (``TlsCopy``): they are read with ``RWF_NOWAIT`` on the loop, and a
read that would block goes to the same pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from zcopy.aio import Outbox
from zcopy.errors import TruncatedFileError
from zcopy.parts import FileSlice

DISK_THREADS = 32  # nginx's default thread pool ("thread_pool default threads=32 max_queue=65536")

# The copy route under TLS: pread this much, write it to the SSL transport. 256 KiB: 16 TLS records per
# write; past this the per-call overhead stops mattering against the copy and encryption.
TLS_CHUNK = 1 << 18

_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
_PAGE = os.sysconf("SC_PAGE_SIZE")
_PROBE = [bytearray(1)]  # preadv2 needs somewhere to put the byte it reads (the loop thread only)


def resident(fd: int, offset: int, count: int) -> bool:
    """Are the first and last page of ``count`` bytes of ``fd`` from ``offset`` in the page cache? (True when the
    file system cannot tell: then we send on the loop as before, as for a file without RWF_NOWAIT support.)"""
    if not _NOWAIT:
        return True
    try:
        os.preadv(fd, _PROBE, offset, _NOWAIT)
        last = offset + count - 1
        if count > 1 and last // _PAGE != offset // _PAGE:
            os.preadv(fd, _PROBE, last, _NOWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True  # EOPNOTSUPP and the like: no way to know without blocking
    return True


class _Job:
    __slots__ = ("args", "fn", "fut", "loop", "queued", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.loop = loop
        self.fn = fn
        self.args = args
        self.fut: asyncio.Future[Any] = loop.create_future()
        self.queued = time.perf_counter()
        self.started = 0.0


class DiskPool:
    """``size`` threads that run the blocking part of cold sends; a FIFO on the loop holds the rest.

    ``run()`` is called on the loop thread only; threads start on first need (and inherit the loop thread's cgroup
    and scheduling) and stay until ``close()``. ``busy`` counts jobs in threads, ``queued`` jobs waiting for one.
    """

    def __init__(self, size: int = DISK_THREADS) -> None:
        if size < 1:
            raise ValueError(f"disk threads must be at least 1, not {size}")
        self.size = size
        self.busy = 0
        self._waiting: deque[_Job] = deque()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self.closed = False

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def threads(self) -> int:
        return len(self._threads)

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` in a pool thread; its result (or exception) in the returned future, on the loop."""
        job = _Job(asyncio.get_running_loop(), fn, args)
        if self.busy < self.size:
            self._start(job)
        else:
            self._waiting.append(job)
        return job.fut

    def _start(self, job: _Job) -> None:
        self.busy += 1
        job.started = time.perf_counter()
        with self._lock:
            spawn = self._idle == 0 and len(self._threads) < self.size
            if not spawn:
                self._idle -= 1
        if spawn:
            t = threading.Thread(target=self._work, name=f"zcopy-disk-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()
        self._jobs.put(job)

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                result: Any = job.fn(*job.args)
                exc: BaseException | None = None
            except BaseException as e:  # handed to the loop, which decides
                result, exc = None, e
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # the loop is closed (server gone): nobody waits for this
                job.loop.call_soon_threadsafe(self._done, job, result, exc)

    def _done(self, job: _Job, result: Any, exc: BaseException | None) -> None:
        self.busy -= 1
        if not job.fut.done():  # cancelled when its connection went away
            if exc is not None:
                job.fut.set_exception(exc)
            else:
                job.fut.set_result(result)
        waiting = self._waiting
        while waiting and self.busy < self.size:
            nxt = waiting.popleft()
            if nxt.fut.done():  # its connection went away while it waited: never runs
                nxt.fn = _nothing
            self._start(nxt)

    def close(self) -> None:
        """Let idle threads exit (a thread blocked on the disk finishes its job first; they are daemons)."""
        if self.closed:
            return
        self.closed = True
        waiting, self._waiting = self._waiting, deque()
        for job in waiting:
            _nothing(*job.args)  # never runs: close its descriptors
            if not job.fut.done():
                job.fut.cancel()
        for _ in self._threads:
            self._jobs.put(None)


def _nothing(*args: Any) -> None:
    if args and isinstance(args[-1], list):
        for fd in args[-1]:
            os.close(fd)


def _sendfile_job(sock_fd: int, fd: int, offset: int, count: int, dups: list[int]) -> int:
    """sendfile on duplicates (closed here); -1 when the non-blocking socket is full."""
    try:
        return os.sendfile(sock_fd, fd, offset, count)
    except (BlockingIOError, InterruptedError):
        return -1
    finally:
        for d in dups:
            os.close(d)


def _pread_job(fd: int, count: int, offset: int, dups: list[int]) -> bytes:
    try:
        return os.pread(fd, count, offset)
    finally:
        for d in dups:
            os.close(d)


async def send_cold(pool: DiskPool, box: Outbox) -> None:
    """Send the chunk ``box.pump()`` stopped at as cold, by sendfile in a pool thread; advances ``box``.

    Raises TruncatedFileError (the file ended early) or OSError (the client went away); when the socket is full
    the box is left ``blocked`` (wait for writability, then pump again)."""
    part, count = box.cold_chunk()
    sock_fd = os.dup(box.sock_fd)
    try:
        fd = os.dup(part.fd)
    except OSError:
        os.close(sock_fd)
        raise
    t0 = time.perf_counter()
    fut = pool.run(_sendfile_job, sock_fd, fd, part.offset + box.position, count, [sock_fd, fd])
    try:
        n = await fut
    finally:
        box.disk_wait_s += time.perf_counter() - t0
        box.disk_chunks += 1
    box.advance_cold(n)


class TlsCopy:
    """The copying route under TLS (sendfile cannot encrypt): read TLS_CHUNK at a time and write it to the SSL
    transport. ``moved`` counts the file bytes written so far, also when a write ends early (for the record). A read
    that would wait for the disk runs in ``pool`` (``disk_wait_s`` adds up how long those took)."""

    __slots__ = ("disk_chunks", "disk_wait_s", "moved", "pool")

    def __init__(self, pool: DiskPool | None = None) -> None:
        self.moved = 0
        self.pool = pool
        self.disk_chunks = 0
        self.disk_wait_s = 0.0

    async def write(
        self, transport: asyncio.Transport, part: FileSlice, wait_writable: Callable[[], Awaitable[None]]
    ) -> None:
        """Write ``part``, awaiting ``wait_writable()`` before each chunk (it raises when the peer is too slow or
        gone); a file shorter than ``part`` raises TruncatedFileError after what it had."""
        pos, end = part.offset, part.offset + part.count
        while pos < end:
            await wait_writable()
            want = min(TLS_CHUNK, end - pos)
            chunk = await self._read(part.fd, want, pos)
            if not chunk:
                raise TruncatedFileError(part.name, pos, end, pos - part.offset)
            transport.write(chunk)
            pos += len(chunk)
            self.moved += len(chunk)

    async def _read(self, fd: int, count: int, offset: int) -> bytes | bytearray | memoryview:
        pool = self.pool
        if pool is None or not _NOWAIT:
            return os.pread(fd, count, offset)
        buf = bytearray(count)  # a fresh buffer per chunk: the SSL transport may keep a reference until it is sent
        try:
            got = os.preadv(fd, [buf], offset, _NOWAIT)
        except BlockingIOError:
            got = -1
        except OSError:
            return os.pread(fd, count, offset)  # no RWF_NOWAIT here: read as before
        if got >= 0:
            return buf if got == count else memoryview(buf)[:got]
        dup = os.dup(fd)
        t0 = time.perf_counter()
        try:
            data: bytes = await pool.run(_pread_job, dup, count, offset, [dup])
        finally:
            self.disk_wait_s += time.perf_counter() - t0
            self.disk_chunks += 1
        return data
