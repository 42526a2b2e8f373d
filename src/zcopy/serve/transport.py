"""The sending side both responders share (static files in ``conn.py``, ASGI in ``asgi/http.py``): cold-aware.

``sendfile(2)`` of a file that is not in the page cache blocks the calling thread until the disk has delivered; on
a one-loop server that thread serves every other client too. So before a body chunk leaves, ``aio.Outbox`` asks
``resident()`` (``preadv2(RWF_NOWAIT)`` of one byte on the chunk's first and last page: two syscalls, no copy, and
a miss starts the read-ahead at once; once a response met a cold chunk, mincore over every page of the next ones).
A resident chunk goes by sendfile on the loop, as before. A cold one goes
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
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from zcopy.aio import Outbox
from zcopy.errors import TruncatedFileError
from zcopy.pagecache import all_resident
from zcopy.parts import FileSlice, Part
from zcopy.serve import logs
from zcopy.serve.config import Host, Limits
from zcopy.serve.h1 import INF, LINGER_SECONDS, RECV_SIZE

DISK_THREADS = 32  # nginx's default thread pool ("thread_pool default threads=32 max_queue=65536")
NICE = 10  # how much lower the disk threads' CPU priority is than the loop's

# The copy route under TLS: pread one TLS record's worth at a time and write it to the SSL transport, whose write
# buffer is capped at the same size (issue #20 F6: it pauses only past 512 KiB by default, and we read 256 KiB at
# a time: ~1.1 MiB of RSS per slow reader). A file is read only as far as the transport can take; the kernel's
# socket buffer queues the rest.
TLS_CHUNK = 16 << 10

_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
_PAGE = os.sysconf("SC_PAGE_SIZE")
_PROBE = [bytearray(1)]  # preadv2 needs somewhere to put the byte it reads (the loop thread only)


def resident(fd: int, offset: int, count: int, exact: bool = False) -> bool:
    """May ``count`` bytes of ``fd`` from ``offset`` be sent without waiting for the disk?

    ``preadv2(RWF_NOWAIT)`` of one byte of the chunk's first page (a miss starts the read-ahead there at once) and,
    for a chunk over two pages, of its last page: two cheap syscalls, the answer for files that are wholly in the
    page cache. ``exact`` (the file is being read from the disk): mincore over every page of the chunk instead of
    the last page, since a read-ahead in flight completes out of order and leaves holes between cached ends. True
    when the file system cannot tell: the chunk is sent on the loop as before."""
    if not _NOWAIT:
        return True
    try:
        os.preadv(fd, _PROBE, offset, _NOWAIT)
        if count > _PAGE:
            last = offset + count - 1
            if exact and count > 2 * _PAGE:
                return all_resident(fd, offset, count) is not False
            if last // _PAGE != offset // _PAGE:
                os.preadv(fd, _PROBE, last, _NOWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True  # EOPNOTSUPP and the like: no way to know without blocking
    return True


class _Job:
    __slots__ = ("args", "fn", "fut", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.loop = loop
        self.fn = fn
        self.args = args
        self.fut: asyncio.Future[Any] = loop.create_future()


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
        # Below the loop thread: a disk thread's sendfile also does the TCP work of its chunk, and on a fast disk
        # several of them would otherwise take the loop's CPU in turns (hot requests waiting ms for their turn).
        with contextlib.suppress(OSError, AttributeError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + NICE))
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
    """sendfile on duplicates (closed here); -1 when the non-blocking socket is full.

    No POSIX_FADV_WILLNEED of the whole chunk first: read-ahead asked for that way is queued in the caller's blkio
    cgroup and, on a throttled disk, stays in flight (its pages locked, unevictable) long after the request that
    wanted it is gone; the bench numbers in docs/benchmarks.md were measured without it."""
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


class Transport:
    """The socket side of one connection, for both responders: reading, sending, deadlines, closing.

    A responder (static ``conn.Session``, ASGI ``asgi.http.Connection``) subclasses one flavour (``RawTransport``:
    a plain socket and sendfile; ``TLSTransport``: an asyncio SSL transport and the copy route) and implements the
    hooks: ``on_data``, ``on_eof`` (``eof`` is already set), ``on_closed``, ``on_linger``, ``send_done`` and
    ``send_failed``. ``send(parts)`` is the one way out: True when everything left (or the send failed, and
    ``send_failed`` was called), False when it goes on in the background (then ``send_done``/``send_failed``
    follow, on the loop). The route a body took is decided here and left in ``route`` (None: no file part).
    """

    host: Host
    loop: asyncio.AbstractEventLoop
    limits: Limits
    peer: str
    closed: bool
    eof: bool
    lingering: bool
    deadline: float
    route: str | None
    _reading: bool  # reading from the socket now

    # -- hooks for the responder ----------------------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def on_eof(self) -> None:
        raise NotImplementedError

    def on_closed(self) -> None:
        """The socket side is closed (``closed`` is set): release what the responder holds."""

    def on_linger(self) -> None:
        """The write side is shut (``lingering`` is set): nothing more will be answered."""

    def send_done(self) -> None:
        raise NotImplementedError

    def send_failed(self, exc: BaseException) -> None:
        raise NotImplementedError

    # -- provided by the flavours ---------------------------------------------------------------------
    def send(self, parts: list[Part], whole: bool = True, probe: bool = True) -> bool:
        """``probe``: ask resident() before each file chunk (False: the caller knows the file is in memory)."""
        raise NotImplementedError

    def set_reading(self, want: bool) -> None:
        raise NotImplementedError

    def write_now(self, data: bytes) -> int:
        """Send what the socket takes now, without waiting; the caller send()s the rest (errors included)."""
        return 0

    def write_nowait(self, data: bytes) -> None:
        raise NotImplementedError

    def close_gracefully(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Close at once, without flushing: the bytes on the wire no longer match their framing."""
        self.close()

    def _log_disk_wait(self, seconds: float, chunks: int, what: str) -> None:
        if chunks and self.host.log_level <= logs.DISK_WAIT:
            msg = f"{self.peer}: body waited {seconds * 1e3:.1f} ms for the disk ({chunks} {what} by disk threads)"
            self.host.log(logs.DISK_WAIT, msg)


class RawTransport(Transport):
    """A plain non-blocking socket: loop.add_reader for input; aio.Outbox (send + sendfile) for output, from the
    read callback while the socket takes it, then from a writability callback (no task, no future), cold chunks
    by a disk thread."""

    def _raw_init(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._reading = True
        self._writing = False
        self._box: Outbox | None = None
        self._whole = True
        self._cold: asyncio.Task[None] | None = None  # a chunk on its way in a disk thread
        # The send deadline of a client that stopped taking bytes while cold chunks went to the disk threads: set
        # when a disk thread first finds the socket full, cleared by progress (so the ping-pong between the loop
        # and the disk threads cannot renew send_timeout for a stalled reader).
        self._stalled: float | None = None
        self.loop.add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if self.lingering:
            if not data:
                self.close()
            return
        if not data:
            self.eof = True
            self.on_eof()
            return
        self.on_data(data)

    def set_reading(self, want: bool) -> None:
        if want != self._reading and not self.closed:
            self._reading = want
            if want:
                self.loop.add_reader(self.fd, self._on_readable)
            else:
                self.loop.remove_reader(self.fd)

    def send(self, parts: list[Part], whole: bool = True, probe: bool = True) -> bool:
        box = Outbox(self.sock, parts, self.limits.max_chunk, resident if probe else None)
        self._whole = whole
        try:
            if box.pump():
                self._report(box)
                return True
        except (TruncatedFileError, OSError) as exc:
            self._report(box)
            self.send_failed(exc)
            return True
        self._box = box
        if box.cold:
            self._to_disk(box)
        else:
            # The socket is full (or the chunk budget is used): go on from a writability callback, like nginx's
            # write event handler. Level-triggered, so after a used-up budget it fires again on the next loop
            # iteration, after the other ready connections.
            self.deadline = time.monotonic() + self.limits.send_timeout
            self._writing = True
            self.loop.add_writer(self.fd, self._on_writable)
        return False

    def _on_writable(self) -> None:
        box = self._box
        assert box is not None
        before = box.sent
        try:
            done = box.pump()
        except (TruncatedFileError, OSError) as exc:
            self._stop_writing()
            self._report(box)
            self.send_failed(exc)
            return
        if box.sent != before:
            # send_timeout is the longest gap between two successful writes (nginx send_timeout).
            self.deadline = time.monotonic() + self.limits.send_timeout
            self._stalled = None
        if done:
            self._stop_writing()
            self._report(box)
            self.send_done()
        elif box.cold:
            self._to_disk(box)
        elif not self._writing:  # back from a disk thread: wait for writability again
            self._writing = True
            self.loop.add_writer(self.fd, self._on_writable)

    def _to_disk(self, box: Outbox) -> None:
        """The next chunk is not in the page cache: sendfile it in a disk thread while the loop serves the rest."""
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)
        self.deadline = INF  # waiting for our disk is not the client's slowness (send_timeout resumes after)
        task = self.loop.create_task(send_cold(self.host.disk, box))
        task.add_done_callback(self._from_disk)
        self._cold = task

    def _from_disk(self, task: asyncio.Task[None]) -> None:
        self._cold = None
        if self.closed or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            box = self._box
            assert box is not None
            self._box = None
            self._report(box)
            self.send_failed(exc)
            return
        box = self._box
        if box is not None and box.blocked:
            # The disk thread found the socket full: the client, not the disk, is slow now. Wait for room (not at
            # once: that chunk is still cold, and would go straight back to a disk thread), under send_timeout
            # counted from the first time this happened since the last byte went out.
            if self._stalled is None:
                self._stalled = time.monotonic() + self.limits.send_timeout
            self.deadline = self._stalled
            if not self._writing:
                self._writing = True
                self.loop.add_writer(self.fd, self._on_writable)
            return
        self._stalled = None
        self.deadline = time.monotonic() + self.limits.send_timeout
        self._on_writable()  # go on at once: the next chunk is most likely resident now (read-ahead)

    def _report(self, box: Outbox) -> None:
        """The route of this send, decided once: what the Outbox used for the file parts (None: none had any)."""
        self._box = None
        files = box.sendfiles or box.route != "sendfile"
        self.route = box.route if files else None
        if files or self._whole:
            box.record("serve.response")
        if box.disk_chunks:
            self._log_disk_wait(box.disk_wait_s, box.disk_chunks, "chunk(s) sent")

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)

    @property
    def sending(self) -> bool:
        return self._box is not None

    def write_now(self, data: bytes) -> int:
        if self.closed:
            return 0
        try:
            return self.sock.send(data)
        except OSError:
            return 0  # EAGAIN, or an error that send() meets again and reports

    def write_nowait(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(data)  # a small error response on an idle socket: one best-effort send

    def close_gracefully(self) -> None:
        """Shut the write side, then read and discard for LINGER_SECONDS (nginx lingering_close), so our close
        does not turn into an RST that destroys the response in flight."""
        if self.closed:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.lingering = True
        self.deadline = time.monotonic() + LINGER_SECONDS
        self.on_linger()
        if self.eof:
            self.close()
        else:
            self.set_reading(True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self.fd)
        self._stop_writing()
        self._box = None
        if self._cold is not None:
            self._cold.cancel()  # the job itself finishes on its own duplicates of the descriptors
            self._cold = None
        self.sock.close()
        self.on_closed()


class TLSTransport(Transport, asyncio.Protocol):
    """An asyncio SSL transport (sendfile cannot encrypt): file bodies are read and written, route "readwrite"."""

    def _tls_init(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reading = True
        self._task: asyncio.Task[None] | None = None

    def on_made(self, transport: asyncio.BaseTransport) -> None:
        """The connection is up (``transport`` set): the responder learns its addresses and registers."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's SSL transport is not an asyncio.Transport subclass, but has the same methods.
        self.transport = transport  # type: ignore[assignment]
        with contextlib.suppress(AttributeError, NotImplementedError, ValueError):  # a loop without them keeps its own
            transport.set_write_buffer_limits(high=TLS_CHUNK, low=TLS_CHUNK // 4)  # type: ignore[attr-defined]
        self.on_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        self.on_data(data)

    def eof_received(self) -> bool:
        # Under TLS the transport closes after EOF whatever we return (asyncio sslproto warns on True), so a
        # client that half-closes gets what is already written; TLS clients close with close_notify anyway.
        self.eof = True
        self.on_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def set_reading(self, want: bool) -> None:
        if want != self._reading and self.transport is not None and not self.closed:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    async def _wait_writable(self) -> None:
        if not self._can_write.is_set():
            # send_timeout is the longest wait for room; the sweeper enforces it by closing us, which wakes this.
            self.deadline = time.monotonic() + self.limits.send_timeout
            await self._can_write.wait()
            if self.closed:
                raise ConnectionResetError("the connection is closed")

    def send(self, parts: list[Part], whole: bool = True, probe: bool = True) -> bool:
        t = self.transport
        if t is None or self.closed or t.is_closing():
            self.send_failed(ConnectionResetError("the connection is closed"))
            return True
        if self._can_write.is_set() and all(type(p) is bytes for p in parts):
            for p in parts:
                t.write(p)  # type: ignore[arg-type]
            self.route = None
            return True
        self._task = self.loop.create_task(self._copy(t, parts))
        return False

    async def _copy(self, t: asyncio.Transport, parts: list[Part]) -> None:
        copy = TlsCopy(self.host.disk)
        self.route = None
        self.deadline = INF  # from here on, waits for room (_wait_writable) and the sweeper bound the copy
        t0 = time.perf_counter()
        try:
            for p in parts:
                if isinstance(p, bytes):
                    t.write(p)
                    continue
                self.route = "readwrite"  # every file byte is copied to be encrypted: never called zero-copy
                await copy.write(t, p, self._wait_writable)
            await self._wait_writable()
        except (TruncatedFileError, OSError, asyncio.CancelledError) as exc:
            self._task = None
            self.send_failed(exc)
            return
        finally:
            if copy.moved:
                self.host.record("serve.response", "readwrite", copy.moved, time.perf_counter() - t0, copy.disk_wait_s)
            self._log_disk_wait(copy.disk_wait_s, copy.disk_chunks, "read(s)")
        self._task = None
        self.send_done()

    @property
    def sending(self) -> bool:
        return self._task is not None

    def write_nowait(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close_gracefully(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()  # flushes what is buffered, then closes (TLS close_notify)
        self.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._can_write.set()  # a copy waiting for room wakes and sees the connection closed
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.on_closed()
