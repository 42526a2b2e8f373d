"""Load shapes from issue #20's attack, shared by tests (small) and bench/attack.py (full size): many slow
readers that stop reading mid-response, and the server's memory and descriptors read from /proc."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import ssl
import struct


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB: resident now, and its peak since start."""
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                got[line[:5]] = int(line.split()[1])
    return got["VmRSS"], got["VmHWM"]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def lift_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


async def _reader(
    addr: tuple[str, int], target: bytes, tls: ssl.SSLContext | None, first: int, started: asyncio.Event,
    release: asyncio.Event, counts: list[int], rst: bool, gate: asyncio.Semaphore,
) -> None:  # fmt: skip
    def done(i: int) -> None:
        counts[i] += 1
        if counts[0] + counts[1] + counts[2] >= counts[3]:
            started.set()

    async with gate:  # connect and read the first bytes a few hundred at a time (the listen backlog is finite)
        try:
            r, w = await asyncio.open_connection(
                addr[0], addr[1], ssl=tls, server_hostname="localhost" if tls else None, limit=1 << 14
            )
        except OSError:
            done(2)
            return
        try:
            w.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
            got = 0
            while got < first:  # the head and the first bytes, then stop reading: a slow reader
                chunk = await r.read(first - got)
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            got = -1
    try:
        done(2 if got < 0 else 0 if got >= first else 1)
        await release.wait()
    finally:
        if rst:
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.close()


async def slow_readers(
    addr: tuple[str, int], target: bytes, n: int, *, tls: ssl.SSLContext | None = None, first: int = 1 << 14,
    on_stalled: object = None, rst: bool = False, concurrency: int = 200,
) -> tuple[int, int, int]:  # fmt: skip
    """``n`` clients GET ``target``, read ``first`` bytes, then stop reading until all are in that state; then
    ``on_stalled()`` (a callable, e.g. a measurement) runs and they all close (FIN, or RST with ``rst``).
    Returns (clients that read ``first`` bytes, clients that got less, clients that failed)."""
    lift_nofile(n + 256)
    started, release = asyncio.Event(), asyncio.Event()
    counts = [0, 0, 0, n]
    gate = asyncio.Semaphore(concurrency)

    tasks = [
        asyncio.ensure_future(_reader(addr, target, tls, first, started, release, counts, rst, gate)) for _ in range(n)
    ]
    await started.wait()
    if callable(on_stalled):
        on_stalled()
    release.set()
    await asyncio.gather(*tasks)
    return counts[0], counts[1], counts[2]
