"""Fixtures: a real zcopy server on 127.0.0.1:0 in a background thread, on asyncio and (when installed) uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zcopy.serve import Server
from zcopy.serve.workers import loop_factory

try:
    import uvloop  # noqa: F401

    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False

# uvloop is optional ("fast" extra). Without it its cases are reported as skipped, with the reason, rather than
# vanishing from the run: the summary says what was not tested.
LOOPS: list[Any] = [
    "asyncio",
    pytest.param(
        "uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop not installed ('fast' extra)")
    ),
]


class Running:
    """A Server running on its own event loop thread; ``addr`` is where to connect."""

    def __init__(self, root: Path, loop_name: str, **kwargs: Any) -> None:
        _, factory = loop_factory(loop_name)
        self.loop = factory()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = Server(root, port=0, **kwargs)
        self.call(self.server.start())
        self.addr = self.server.address

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.call(self.server.shutdown(1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def connect(self, timeout: float = 5.0) -> socket.socket:
        s = socket.create_connection(self.addr, timeout=timeout)
        return s


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A small document root: files, a directory with index.html, a dotfile, a bigger binary file."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello world\n")
    (root / "empty.bin").write_bytes(b"")
    (root / "data.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB, every offset's byte is known
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_bytes(b"<h1>docs</h1>\n")
    (root / "nodir").mkdir()
    (root / "nodir" / "a <b>&.txt").write_bytes(b"x")
    (root / ".secret").write_bytes(b"hidden\n")
    (root / "sp ace.txt").write_bytes(b"space\n")
    return root


@pytest.fixture
def serve(site: Path, loop_name: str) -> Iterator[Callable[..., Running]]:
    """Factory: serve(**Server kwargs) → Running on ``site``; every server started is stopped afterwards."""
    started: list[Running] = []

    def start(root: Path | None = None, **kwargs: Any) -> Running:
        r = Running(root or site, loop_name, **kwargs)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def recv_response(sock: socket.socket) -> tuple[bytes, dict[bytes, bytes], bytes, bytes]:
    """Read one response (status line, headers, Content-Length body) from a raw socket; returns leftovers too."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    status = lines[0]
    n = int(headers.get(b"content-length", b"0"))
    code = int(status.split()[1])
    if code in (204, 304) or getattr(sock, "_head_only", False):
        n = 0
    body = bytearray(rest)  # bytearray: appending is amortised O(1); bytes += would copy the whole body each time
    while len(body) < n:
        chunk = sock.recv(max(65536, n - len(body)))
        if not chunk:
            raise ConnectionError(f"closed after {len(body)} of {n} body bytes")
        body += chunk
    return status, headers, bytes(body[:n]), bytes(body[n:])


def read_until_close(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    # A bytearray and recv_into: reading 32 MiB with `out += chunk` copied ~8 GiB and took seconds of a test's
    # time budget (the SIGTERM test reads a 32 MiB body within the server's grace period).
    out = bytearray()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        try:
            n = sock.recv_into(view)
        except ConnectionResetError:
            break
        if not n:
            break
        out += view[:n]
    return bytes(out)


def _tcp_inodes(port: int, listening: bool | None = None) -> set[str]:
    """"socket:[inode]" of the TCP sockets on the machine whose local port is ``port`` (state 0A = LISTEN)."""
    inodes = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) != port:
                    continue
                if listening is None or (fields[3] == "0A") == listening:
                    inodes.add(f"socket:[{fields[9]}]")
    return inodes


def _our_fd_targets() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile (the fd of listdir itself)
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
    return out


def listening_here(port: int) -> bool:
    """Does this process hold a listening socket on ``port``? (Without connecting: the port may be reused.)"""
    inodes = _tcp_inodes(port, listening=True)
    return any(t in inodes for t in _our_fd_targets())


def server_fds(r: Running, root: Path) -> int:
    """Descriptors of this process that the server holds: sockets whose local port is the server's (the listener
    and accepted connections) and files under ``root``. Unlike a count of the whole fd table, this does not
    move with whatever else the test process (or an earlier test) has open."""
    inodes = _tcp_inodes(r.addr[1])
    real_root = os.path.realpath(root)
    n = 0
    for target in _our_fd_targets():
        if target in inodes or target.startswith(real_root + "/"):
            n += 1
    return n


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()
