"""Cold files never stall the server: a hot request is answered while another body waits for the disk.

The disk is an ext4 image on a loop device whose reads are held on demand (helddisk.py): the server's loop thread
(and the threads it starts) sit in a blkio cgroup limited to 1 byte/s while held. A body that is not in the page
cache then cannot leave until the test releases the disk; a hot request (its file cached, or an ASGI route that
reads no file) must be answered meanwhile, on both loops, static and --app, with and without TLS.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Running, recv_response
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
