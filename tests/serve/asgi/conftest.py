"""A real `zcopy serve --app` subprocess serving tests/serve/asgi/apps.py, on each installed loop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from ..conftest import LOOPS

REPO = Path(__file__).resolve().parents[3]
DATA_BIN = bytes(range(256)) * 4096  # 1 MiB, every offset's byte is known
STARTUP = re.compile(r"https?://([\d.]+):(\d+)/ .*route=(\w+) loop=(\w+) pid=(\d+)")


def read_startup(stream: IO[str], pattern: str = "route=") -> tuple[str, list[str]]:
    """Read stderr up to the first line containing ``pattern`` (the start-up line: at info the lifespan's
    "startup complete" comes before it); returns it and the lines before it. "" when the stream ended first."""
    before: list[str] = []
    while line := stream.readline():
        if pattern in line:
            return line, before
        before.append(line)
    return "", before


def stop_process(p: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM a server (a graceful stop), wait ≤ 20 s, kill it if it is still there; (exit code, rest of stderr)."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err


class AppServer:
    """``zcopy serve --app SPEC`` in a subprocess; ``addr`` once it printed its start-up line."""

    def __init__(self, spec: str, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, "ZCOPY_TEST_DATA": str(data), **(env or {})}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "zcopy", "serve", "--app", spec, "--app-dir", str(REPO), "--port", "0", *args],
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        assert self.p.stderr is not None
        self.line, self.before = read_startup(self.p.stderr)
        m = STARTUP.search(self.line)
        if not m:
            rest = self.p.stderr.read() if self.p.poll() is not None else ""
            raise AssertionError(f"server did not start: {''.join(self.before)}{self.line}{rest}")
        self.addr = (m.group(1), int(m.group(2)))
        self.url = f"http://{self.addr[0]}:{self.addr[1]}"
        self.pid = int(m.group(5))
        # Drain stderr from now on: at the default level a server writes a line per WebSocket (uvicorn's), and a
        # test with many of them must not fill the pipe and stall the server.
        self.rest: list[str] = []
        self._drain = threading.Thread(target=lambda: self.rest.extend(self.p.stderr or ()), daemon=True)
        self._drain.start()

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(self.addr, timeout=timeout)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, wait ≤ 20 s (then kill); (exit code, stderr after the start-up line)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(20)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        self._drain.join(10)
        return self.p.returncode, "".join(self.rest)


def make_data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.bin").write_bytes(DATA_BIN)
    (root / "small.txt").write_bytes(b"hello world\n")
    (root / "empty.bin").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("asgi-data"))


@pytest.fixture(scope="module", params=LOOPS)
def server(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[AppServer]:
    """One server per test module and loop (starting Starlette costs ~0.5 s; the tests share it)."""
    s = AppServer("tests.serve.asgi.apps:app", data_dir, "--loop", str(request.param))
    yield s
    code, err = s.stop()
    assert code == 0, err  # every module's shared server stops gracefully on SIGTERM


def recv_head(sock: socket.socket, buf: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Read a response head; returns (status, headers lower-cased, bytes after the head)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, rest


def recv_exact(sock: socket.socket, n: int, buf: bytes = b"") -> tuple[bytes, bytes]:
    parts = [buf]
    have = len(buf)
    while have < n:
        chunk = sock.recv(max(65536, n - have))
        if not chunk:
            raise ConnectionError(f"closed after {have} of {n} bytes")
        parts.append(chunk)
        have += len(chunk)
    data = b"".join(parts)
    return data[:n], data[n:]


def recv_chunked(sock: socket.socket, buf: bytes = b"") -> tuple[bytes, bytes]:
    """Decode a chunked body; returns (body, leftover)."""
    body = []
    while True:
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a chunked body")
            buf += chunk
        size_line, _, buf = buf.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        data, buf = recv_exact(sock, size + 2, buf)
        assert data[-2:] == b"\r\n", data[-10:]
        if size == 0:
            return b"".join(body), buf
        body.append(data[:-2])


def response(
    sock: socket.socket, buf: bytes = b"", head_only: bool = False
) -> tuple[int, dict[str, str], bytes, bytes]:
    """One whole response (Content-Length or chunked); returns (status, headers, body, leftover)."""
    status, headers, rest = recv_head(sock, buf)
    if head_only or status in (204, 304):
        return status, headers, b"", rest
    if headers.get("transfer-encoding") == "chunked":
        body, rest = recv_chunked(sock, rest)
        return status, headers, body, rest
    body, rest = recv_exact(sock, int(headers.get("content-length", "0")), rest)
    return status, headers, body, rest


def read_until_close(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    out = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out.append(chunk)
    return b"".join(out)
