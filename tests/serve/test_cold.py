"""Cold files never stall the server: a hot request is answered while another body waits for the disk.

The disk is an ext4 image on a loop device whose reads are held on demand (helddisk.py): the server's loop thread
(and the threads it starts) sit in a blkio cgroup limited to 1 byte/s while held. A body that is not in the page
cache then cannot leave until the test releases the disk; a hot request (its file cached, or an ASGI route that
reads no file) must be answered meanwhile, on both loops, static and --app, with and without TLS.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Running, read_until_close, recv_response
from .helddisk import HeldDisk
from .tlsfiles import client_context, make_cert, server_context

COLD = os.urandom(1 << 20)
HOT = b"hot\n"
# Generous: a hot answer takes milliseconds; this only bounds how long a broken server makes the test wait.
HOT_WAIT = 5.0


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeldDisk]:
    d = HeldDisk.make(tmp_path_factory.mktemp("cold"))
    d.write("cold.bin", COLD)
    (d.mnt / "hot.txt").write_bytes(HOT)
    yield d
    d.remove()


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return server_context(*make_cert(tmp_path_factory.mktemp("tls")))


def file_app(root: Path) -> Any:
    """A raw ASGI app: /hot answers from memory, anything else is the file of that name by pathsend."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/hot.txt":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
            await send({"type": "http.response.body", "body": HOT})
            return
        size = os.path.getsize(root / path[1:])
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(root / path[1:])})

    return app


class Client:
    """A client of the server under test; closed by the ``running`` fixture (a loopback socket that still holds
    unread sendfile'd bytes pins their page-cache pages, and the next test could not evict the file)."""

    def __init__(self, r: Running, tls: bool) -> None:
        raw = r.connect(HOT_WAIT)
        self.sock: socket.socket = client_context().wrap_socket(raw) if tls else raw
        r.clients.append(self.sock)  # type: ignore[attr-defined]

    def get(self, path: str) -> None:
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())

    def response(self) -> tuple[bytes, bytes]:
        status, _, body, _ = recv_response(self.sock)
        return status, body


@pytest.fixture(params=["static", "app"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[False, True], ids=["raw", "tls"])
def secure(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def running(
    disk: HeldDisk, loop_name: str, mode: str, secure: bool, request: pytest.FixtureRequest
) -> Iterator[Running]:
    ctx = request.getfixturevalue("tls_context") if secure else None
    if mode == "static":
        r = Running(disk.mnt, loop_name, ssl=ctx)
    else:
        r = Running(None, loop_name, app=file_app(disk.mnt), ssl=ctx)  # type: ignore[arg-type]
    r.clients = []  # type: ignore[attr-defined]
    assert r.thread.native_id is not None
    disk.join(r.thread.native_id)
    disk.evict(disk.mnt / "cold.bin")
    (disk.mnt / "hot.txt").read_bytes()  # in the page cache
    try:
        yield r
    finally:
        disk.release()
        for sock in r.clients:  # type: ignore[attr-defined]
            sock.close()
        r.stop()


def test_hot_request_is_answered_while_a_cold_body_waits_for_the_disk(
    running: Running, disk: HeldDisk, secure: bool
) -> None:
    cold = Client(running, secure)
    hot = Client(running, secure)
    with disk.held():
        cold.get("/cold.bin")
        disk.wait_for_waiter()  # the cold body is now stuck on the disk
        hot.get("/hot.txt")
        try:
            status, body = hot.response()
        except TimeoutError as exc:
            raise AssertionError(f"the hot request was not answered within {HOT_WAIT} s: the loop waits") from exc
        assert status.startswith(b"HTTP/1.1 200") and body == HOT
        assert disk.waiting(), "the cold body should still be waiting for the disk"
    cold.sock.settimeout(30)
    status, body = cold.response()
    assert status.startswith(b"HTTP/1.1 200")
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(COLD).hexdigest()


# -- bytes stay exact, and nothing leaks, when bodies wait for the disk ---------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _pool(r: Running) -> tuple[int, int]:
    """(jobs in disk threads, jobs queued for one) of the running server."""

    async def ask() -> tuple[int, int]:
        return r.server.disk.busy, r.server.disk.queued

    return r.call(ask())  # type: ignore[no-any-return]


def _until(check: Any, what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)


@pytest.mark.parametrize("mode", ["static"])  # the test app's pathsend sends whole files
def test_ranges_on_a_cold_file(running: Running, disk: HeldDisk, secure: bool) -> None:
    c = Client(running, secure)
    with disk.held():
        c.sock.sendall(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=300000-700000\r\n\r\n")
        disk.wait_for_waiter()
    status, body = c.response()
    assert status.startswith(b"HTTP/1.1 206") and body == COLD[300000:700001]


def test_cold_pathsend_is_sendfile_and_the_trace_log_says_it_waited(
    disk: HeldDisk, loop_name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    r = Running(None, loop_name, app=file_app(disk.mnt), log_level="trace")  # type: ignore[arg-type]
    try:
        assert r.thread.native_id is not None
        disk.join(r.thread.native_id)
        disk.evict(disk.mnt / "cold.bin")
        c = r.connect(HOT_WAIT)
        with disk.held():
            c.sendall(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            disk.wait_for_waiter()
        _, _, body, _ = recv_response(c)
        c.close()
        assert body == COLD
    finally:
        disk.release()
        r.stop()
    err = capfd.readouterr().err
    assert "waited" in err and "ms for the disk" in err and "by disk threads" in err, err[-2000:]


def test_observe_reports_the_disk_wait_and_route_sendfile(disk: HeldDisk, loop_name: str) -> None:
    from zcopy import observe
    from zcopy.serve import Server
    from zcopy.serve.workers import loop_factory

    disk.evict(disk.mnt / "cold.bin")

    async def main() -> bytes:
        async with Server(disk.mnt, port=0) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await reader.read()
            writer.close()
            return data

    me = threading.get_native_id()
    releaser = threading.Thread(target=lambda: (disk.wait_for_waiter(), time.sleep(0.05), disk.release()))
    _, factory = loop_factory(loop_name)
    loop = factory()
    disk.join(me)
    try:
        disk.hold()
        releaser.start()
        with observe() as obs:
            out = loop.run_until_complete(main())
    finally:
        disk.release()
        disk.leave(me)
        loop.close()
        releaser.join(10)
    assert out.endswith(COLD)
    op = [o for o in obs.operations if o.op == "serve.response"][-1]
    assert op.route == "sendfile" and op.nbytes == len(COLD) and op.user_bytes == len(out) - len(COLD)
    assert op.disk_wait_s > 0 and op.as_dict()["disk_wait_s"] == op.disk_wait_s


def test_truncated_during_a_cold_send_closes_that_connection_only(
    disk: HeldDisk, loop_name: str, mode: str
) -> None:
    path = disk.write("shrinks.bin", COLD)
    app = file_app(disk.mnt) if mode == "app" else None
    r = Running(None if app else disk.mnt, loop_name, app=app, max_chunk=256 << 10)  # type: ignore[arg-type]
    try:
        assert r.thread.native_id is not None
        disk.join(r.thread.native_id)
        c = r.connect(HOT_WAIT)
        with disk.held():
            c.sendall(b"GET /shrinks.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            disk.wait_for_waiter()
            cut = threading.Thread(target=os.truncate, args=(path, 100_000))  # waits for the read in flight
            cut.start()
        cut.join(10)
        got = read_until_close(c, 10)
        c.close()
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"content-length: 1048576" in head.lower()
        assert len(body) < len(COLD) and body == COLD[: len(body)]  # short, closed, and what came is right
        hot = r.connect(HOT_WAIT)  # the server goes on
        hot.sendall(b"GET /hot.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_response(hot)[2] == HOT
        hot.close()
        _until(lambda: _pool(r) == (0, 0), "the disk pool is idle")
    finally:
        disk.release()
        r.stop()


def test_client_abort_while_a_chunk_is_in_the_pool_leaks_no_fd_or_slot(
    disk: HeldDisk, loop_name: str, mode: str
) -> None:
    app = file_app(disk.mnt) if mode == "app" else None
    r = Running(None if app else disk.mnt, loop_name, app=app)  # type: ignore[arg-type]
    try:
        assert r.thread.native_id is not None
        disk.join(r.thread.native_id)
        warm = r.connect(HOT_WAIT)  # the static server's file cache keeps cold.bin open: count it in the baseline
        warm.sendall(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_response(warm)[2] == COLD
        warm.close()
        disk.evict(disk.mnt / "cold.bin")
        before = _fds()
        c = r.connect(HOT_WAIT)
        with disk.held():
            c.sendall(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            disk.wait_for_waiter()
            assert _pool(r) == (1, 0)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()  # RST while the chunk is on the disk
            time.sleep(0.1)
        _until(lambda: _pool(r) == (0, 0), "the disk pool slot is given back")
        _until(lambda: _fds() <= before, f"descriptors back to {before} (now {_fds()})")
    finally:
        disk.release()
        r.stop()


def test_a_full_pool_makes_cold_work_wait_not_hot_requests(disk: HeldDisk, loop_name: str) -> None:
    other = disk.write("cold2.bin", COLD[::-1])
    r = Running(disk.mnt, loop_name, disk_threads=1)
    try:
        assert r.thread.native_id is not None
        disk.join(r.thread.native_id)
        disk.evict(disk.mnt / "cold.bin")
        disk.evict(other)
        a, b, hot = r.connect(HOT_WAIT), r.connect(HOT_WAIT), r.connect(HOT_WAIT)
        with disk.held():
            a.sendall(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            disk.wait_for_waiter()
            b.sendall(b"GET /cold2.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            _until(lambda: _pool(r) == (1, 1), "one cold chunk in the only disk thread, one queued")
            hot.sendall(b"GET /hot.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            assert recv_response(hot)[2] == HOT
            assert _pool(r) == (1, 1)
        a.settimeout(30)
        b.settimeout(30)
        assert recv_response(a)[2] == COLD
        assert recv_response(b)[2] == COLD[::-1]
        for s in (a, b, hot):
            s.close()
        _until(lambda: _pool(r) == (0, 0), "the disk pool is idle")
    finally:
        disk.release()
        r.stop()


def test_graceful_shutdown_with_cold_work_in_flight(disk: HeldDisk, loop_name: str, mode: str) -> None:
    app = file_app(disk.mnt) if mode == "app" else None
    r = Running(None if app else disk.mnt, loop_name, app=app)  # type: ignore[arg-type]
    assert r.thread.native_id is not None
    disk.join(r.thread.native_id)
    disk.evict(disk.mnt / "cold.bin")
    before = _fds()
    c = r.connect(HOT_WAIT)
    try:
        with disk.held():
            c.sendall(b"GET /cold.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            disk.wait_for_waiter()
            r.call(r.server.shutdown(0.3))  # returns after its grace although the disk still holds the chunk
            assert disk.waiting()
        # Cut at the end of the grace; the chunk in flight may still arrive (its job holds a duplicate of the
        # socket until the disk delivers): whatever came is exact, and then the connection is closed.
        body = read_until_close(c, 10).partition(b"\r\n\r\n")[2]
        assert body == COLD[: len(body)]
        c.close()
        _until(lambda: _fds() <= before, f"descriptors back to {before} (now {_fds()})")
    finally:
        disk.release()
        r.stop()
