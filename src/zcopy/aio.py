"""Async zero-copy send on raw non-blocking sockets, for plain asyncio and uvloop alike.

uvloop has no loop.sendfile and asyncio's copies under TLS, so we drive os.sendfile ourselves on the socket fd:
one call per chunk, capped (like nginx sendfile_max_chunk) so one fast reader cannot starve the loop; EAGAIN →
await writability with loop.add_writer (both loops have it for fds no transport owns); a 0 return before the end
means the file shrank → TruncatedFileError. A head sent with MSG_MORE leaves in the same segment as the body.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

from zcopy import _sys
from zcopy import observe as _observe  # not `from zcopy.observe import`: that rebinds zcopy.observe to the module
from zcopy.errors import TruncatedFileError
from zcopy.parts import FileSlice, Part

# nginx sendfile_max_chunk default (2m since 1.21.4): large enough that per-call overhead vanishes against the
# copy-free transfer, small enough that one client on loopback (~GB/s) yields the loop every ~1 ms.
MAX_CHUNK = 2 << 20

# Linux: MSG_MORE = 0x8000 (socket.h); on other systems we send without it (head and body may leave apart).
MSG_MORE: int = getattr(socket, "MSG_MORE", 0)


class Outbox:
    """An ordered list of byte strings and file slices for one socket, and how far sending has got.

    ``pump()`` moves as much as the socket takes now without blocking (at most ``max_chunk`` bytes per call);
    ``drain()`` awaits until everything is sent. Counters feed observe: syscalls by name and bytes sent.
    """

    __slots__ = (
        "_blocked",
        "_chunk",
        "_extra",
        "_i",
        "_missed",
        "_pos",
        "_probed",
        "_probed_to",
        "_sock",
        "body_bytes",
        "cold",
        "copied",
        "disk_chunks",
        "disk_wait_s",
        "max_chunk",
        "parts",
        "probe",
        "route",
        "sendfiles",
        "sends",
        "sent",
        "sock_fd",
    )

    def __init__(
        self,
        sock: socket.socket,
        parts: list[Part],
        max_chunk: int = MAX_CHUNK,
        probe: Callable[[int, int, int, bool], bool] | None = None,
    ) -> None:
        self._sock = sock
        self.sock_fd = sock.fileno()
        self.parts = parts
        self.max_chunk = max_chunk
        self._i = 0
        self._pos = 0
        self._blocked = False
        self.sent = 0  # all bytes, head included
        self.body_bytes = 0  # bytes that went by sendfile (never crossed user space)
        self.sends = 0  # send(2) calls
        self.sendfiles = 0  # sendfile(2) calls
        # "sendfile" until a file refuses it (EINVAL etc. before any byte: some FUSE/network file systems);
        # then the core's route table picks the next route (mmap/readwrite) and its name is reported here.
        self.route = "sendfile"
        self.copied = 0  # bytes a fallback route moved through user space
        self._extra: dict[str, int] = {}
        # probe(fd, offset, count, exact): may this chunk be sent without waiting for the disk? When it says no,
        # pump() stops with ``cold`` set, and the caller sends that chunk elsewhere (serve/transport.py: a disk
        # thread). ``exact`` once a chunk of this outbox was cold (its file is being read from the disk).
        self.probe = probe
        self.cold = False
        self._chunk = 0
        self._probed = -1  # the part (index) whose bytes up to _probed_to were found resident
        self._probed_to = 0
        self._missed = False  # a chunk of this outbox was cold: from then on the probe checks every page
        self.disk_chunks = 0  # chunks that went by sendfile in a disk thread
        self.disk_wait_s = 0.0  # how long they took, queue included

    @property
    def syscalls(self) -> dict[str, int]:
        """Syscalls made so far, by name (as zcopy.observe counts them)."""
        out = {}
        if self.sends:
            out["send"] = self.sends
        if self.sendfiles:
            out["sendfile"] = self.sendfiles
        for k, v in self._extra.items():
            out[k] = out.get(k, 0) + v
        return out

    @property
    def done(self) -> bool:
        return self._i >= len(self.parts)

    @property
    def blocked(self) -> bool:
        """True when the last pump stopped on EAGAIN (wait for writability), False when it used its budget."""
        return self._blocked

    def pump(self) -> bool:
        """Send without blocking; True when all parts are out. Raises TruncatedFileError or OSError."""
        budget = self.max_chunk
        parts = self.parts
        self._blocked = False
        self.cold = False
        while self._i < len(parts):
            part = parts[self._i]
            more = self._i + 1 < len(parts)
            if isinstance(part, bytes):
                left = len(part) - self._pos
                if left <= 0:
                    self._i += 1
                    self._pos = 0
                    continue
                self.sends += 1
                try:
                    n = self._sock.send(memoryview(part)[self._pos :] if self._pos else part, MSG_MORE if more else 0)
                except (BlockingIOError, InterruptedError):
                    self._blocked = True
                    return False
            else:
                left = part.count - self._pos
                if left <= 0:
                    self._i += 1
                    self._pos = 0
                    continue
                if budget <= 0:
                    return False
                if self.route != "sendfile":
                    n = self._fallback(part, min(left, budget))
                    if n < 0:
                        self._blocked = True
                        return False
                else:
                    count = min(left, budget)
                    if self.probe is not None:
                        if self._probed == self._i and self._pos < self._probed_to:
                            count = min(count, self._probed_to - self._pos)  # inside a range found resident
                        elif self.probe(part.fd, part.offset + self._pos, count, self._missed):
                            self._probed, self._probed_to = self._i, self._pos + count
                        else:
                            self.cold = self._missed = True
                            self._chunk = count
                            return False
                    self.sendfiles += 1
                    try:
                        n = os.sendfile(self.sock_fd, part.fd, part.offset + self._pos, count)
                    except (BlockingIOError, InterruptedError):
                        self._blocked = True
                        return False
                    except OSError as exc:
                        if self._pos or exc.errno not in _sys.GIVE_UP_ERRNOS:
                            raise
                        self.route = "fallback"  # this file cannot be sendfile'd: let the core choose
                        continue
                if n == 0:
                    raise TruncatedFileError(part.name, part.offset + self._pos, part.offset + part.count, self._pos)
                budget -= n
                self.body_bytes += n
            self._pos += n
            self.sent += n
            if n < left:
                if isinstance(part, bytes):
                    self._blocked = True  # a short send means the socket buffer is full
                    return False
                continue
            self._i += 1
            self._pos = 0
        return True

    def cold_chunk(self) -> tuple[FileSlice, int]:
        """After pump() stopped with ``cold``: the file slice and how many bytes of it (from ``position``) to send."""
        part = self.parts[self._i]
        assert self.cold and isinstance(part, FileSlice)
        return part, self._chunk

    @property
    def position(self) -> int:
        """How far into the current part sending has got."""
        return self._pos

    def advance_cold(self, n: int) -> None:
        """Account for the sendfile of the cold chunk done elsewhere: ``n`` bytes, or -1 (the socket was full)."""
        part, _ = self.cold_chunk()
        self.cold = False
        self.sendfiles += 1
        if n < 0:
            self._blocked = True
            return
        if n == 0:
            raise TruncatedFileError(part.name, part.offset + self._pos, part.offset + part.count, self._pos)
        self.body_bytes += n
        self.sent += n
        self._pos += n
        if self._pos >= part.count:
            self._i += 1
            self._pos = 0

    def _fallback(self, part: FileSlice, count: int) -> int:
        """Move by the core's route table (never sendfile again); -1 when the socket would block."""
        from zcopy.routes import move  # imported on first need: the common path never pays for it

        moved = move(part.fd, self.sock_fd, part.offset + self._pos, count, name=part.name, op="serve.fallback")
        self.route = moved.route
        self.copied += moved.user_bytes
        for k, v in moved.syscalls.items():
            self._extra[k] = self._extra.get(k, 0) + v
        if moved.nbytes == 0 and moved.status == "dst_again":
            return -1
        return moved.nbytes

    async def drain(self, loop: asyncio.AbstractEventLoop, timeout: float | None = None) -> None:
        """Pump until done; ``timeout`` bounds each wait for writability (a stalled reader → TimeoutError)."""
        while not self.pump():
            if self._blocked:
                await wait_writable(loop, self.sock_fd, timeout)
            else:
                await asyncio.sleep(0)  # chunk budget used: let other connections run (fairness)

    def record(self, op: str, wall_s: float = 0.0) -> None:
        """Report this outbox to zcopy.observe (a contextvar check when nobody observes)."""
        if _observe.current() is None:
            return  # nobody observes: not even the syscall dict is built (every response of a server comes here)
        _observe.record(
            op,
            self.route,
            self.body_bytes,
            syscalls=self.syscalls,
            user_bytes=self.sent - self.body_bytes + self.copied,
            wall_s=wall_s,
            disk_wait_s=self.disk_wait_s,
        )


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_writable(loop: asyncio.AbstractEventLoop, fd: int, timeout: float | None = None) -> None:
    """Wait until ``fd`` is writable (TimeoutError after ``timeout`` seconds); works on asyncio and uvloop."""
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _wake, fut)
    try:
        if timeout is None:
            await fut
        else:
            try:
                await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError as exc:  # a distinct class before Python 3.11
                raise TimeoutError(f"fd {fd} not writable for {timeout} s") from exc
    finally:
        loop.remove_writer(fd)


async def sendfile(
    sock: socket.socket,
    file_fd: int,
    offset: int,
    count: int,
    *,
    head: bytes = b"",
    max_chunk: int = MAX_CHUNK,
    timeout: float | None = None,
    name: str | None = None,
) -> int:
    """Send ``head`` then ``count`` bytes of ``file_fd`` from ``offset`` on a non-blocking socket; returns body bytes.

    The head goes with MSG_MORE so it shares a segment with the first body bytes. Raises TruncatedFileError if
    the file ends early (what moved is in ``bytes_moved``; the peer got a short body, so close the connection),
    TimeoutError if the peer stops reading for ``timeout`` seconds, OSError from the kernel otherwise.
    """
    if sock.gettimeout() != 0:
        raise ValueError("aio.sendfile needs a non-blocking socket (sock.setblocking(False))")
    loop = asyncio.get_running_loop()
    parts: list[Part] = [head] if head else []
    if count > 0:
        parts.append(FileSlice(file_fd, offset, count, name or f"fd:{file_fd}"))
    box = Outbox(sock, parts, max_chunk)
    t0 = time.perf_counter()
    try:
        await box.drain(loop, timeout)
    finally:
        box.record("aio.sendfile", time.perf_counter() - t0)
    return box.body_bytes


async def send_all(sock: socket.socket, data: bytes, *, timeout: float | None = None) -> None:
    """Send all of ``data`` on a non-blocking socket, waiting for writability as needed."""
    box = Outbox(sock, [data])
    await box.drain(asyncio.get_running_loop(), timeout)
