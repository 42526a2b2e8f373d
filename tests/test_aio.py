"""zcopy.aio on real non-blocking sockets, under asyncio and uvloop: EAGAIN waits, chunk cap, truncation, observe."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from zcopy import aio, observe
from zcopy.errors import TruncatedFileError


def _uvloop_new_event_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


try:
    import uvloop  # noqa: F401

    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False

# uvloop is optional: without it, its cases show as skipped with the reason instead of disappearing.
LOOPS: list[Any] = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(
        _uvloop_new_event_loop,
        id="uvloop",
        marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop not installed ('fast' extra)"),
    ),
]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        loop = request.param()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()

    return runner


def drain_in_thread(sock: socket.socket, out: bytearray, delay: float = 0.0) -> threading.Thread:
    def reader() -> None:
        if delay:
            threading.Event().wait(delay)
        while chunk := sock.recv(1 << 16):
            out.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    return t


# SO_SNDBUFFORCE (linux/socket.h): like SO_SNDBUF but past net.core.wmem_max; needs CAP_NET_ADMIN.
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def big_send_buffer(sock: socket.socket, size: int) -> None:
    """Give ``sock`` a send buffer of at least ``size`` bytes, or skip: the chunk-cap tests can only tell a cap
    from a full socket buffer when the buffer is much larger than the cap. The usual default (208 KiB, wmem_max)
    is smaller than the caps tested, and then the tests would pass with the cap removed."""
    for opt in (SO_SNDBUFFORCE, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError:  # EPERM without CAP_NET_ADMIN
            continue
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= size:  # the kernel reports double
            return
    pytest.skip(f"cannot get a {size >> 20} MiB socket send buffer (net.core.wmem_max, no CAP_NET_ADMIN)")


def test_sendfile_head_and_body_with_eagain(tmp_path: Path, run: Callable[..., Any]) -> None:
    data = os.urandom(8 << 20)
    f = tmp_path / "f"
    f.write_bytes(data)
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)  # far below 8 MiB: EAGAIN on any machine
    a.setblocking(False)
    got = bytearray()
    t = drain_in_thread(b, got, delay=0.2)  # the reader starts late: the sender must hit EAGAIN and wait

    async def main() -> int:
        with open(f, "rb") as fh:
            return await aio.sendfile(a, fh.fileno(), 100, len(data) - 100, head=b"HEAD", max_chunk=1 << 20)

    with observe() as obs:
        n = run(main())
    a.close()
    t.join()
    b.close()
    assert n == len(data) - 100
    assert bytes(got) == b"HEAD" + data[100:]
    op = obs.operations[-1]
    assert op.route == "sendfile" and op.nbytes == n and op.user_bytes == 4
    assert op.syscalls["sendfile"] >= 8  # one call per buffer-full at most: ~8 MiB cannot go in fewer


def test_truncation_raises_with_progress(tmp_path: Path, run: Callable[..., Any]) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1000)
    a, b = socket.socketpair()
    a.setblocking(False)
    got = bytearray()
    t = drain_in_thread(b, got)

    async def main() -> None:
        with open(f, "rb") as fh:
            await aio.sendfile(a, fh.fileno(), 0, 5000, name="f")

    with pytest.raises(TruncatedFileError) as e:
        run(main())
    a.close()
    t.join()
    b.close()
    assert e.value.bytes_moved == 1000 and e.value.position == 1000 and e.value.expected_end == 5000
    assert len(got) == 1000


def test_stalled_reader_times_out(tmp_path: Path, run: Callable[..., Any]) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * (16 << 20))
    a, b = socket.socketpair()
    a.setblocking(False)

    async def main() -> None:
        with open(f, "rb") as fh:
            await aio.sendfile(a, fh.fileno(), 0, 16 << 20, timeout=0.2)

    with pytest.raises(TimeoutError):
        run(main())
    a.close()
    b.close()


def test_chunk_cap_yields_to_other_tasks(tmp_path: Path, run: Callable[..., Any]) -> None:
    """With a small cap the loop gets control between chunks even when the socket never blocks."""
    f = tmp_path / "f"
    f.write_bytes(b"y" * (4 << 20))
    a, b = socket.socketpair()
    big_send_buffer(a, 16 << 20)  # the socket never blocks: only the cap can hand control back to the loop
    a.setblocking(False)
    got = bytearray()
    t = drain_in_thread(b, got)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        tick = asyncio.ensure_future(ticker())
        with open(f, "rb") as fh:
            await aio.sendfile(a, fh.fileno(), 0, 4 << 20, max_chunk=64 << 10)
        tick.cancel()

    with observe() as obs:
        run(main())
    a.close()
    t.join()
    b.close()
    assert len(got) == 4 << 20
    # The buffer could take the whole file in one call: 64 calls are the cap's doing, and so is the ticker.
    assert obs.operations[-1].syscalls["sendfile"] >= 64
    assert ticks >= 8  # at least a share of the 64 chunk boundaries let the ticker run


def test_blocking_socket_refused(run: Callable[..., Any]) -> None:
    a, b = socket.socketpair()
    with pytest.raises(ValueError):
        run(aio.sendfile(a, 0, 0, 1))
    a.close()
    b.close()


def test_send_all(run: Callable[..., Any]) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    got = bytearray()
    t = drain_in_thread(b, got, delay=0.1)
    payload = os.urandom(4 << 20)
    run(aio.send_all(a, payload))
    a.close()
    t.join()
    b.close()
    assert bytes(got) == payload
