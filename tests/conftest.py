"""Shared fixtures: real files, real sockets on 127.0.0.1, real pipes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from direct_fs import disk_dir

# A suite started in the background by a non-interactive shell (`make test &`) inherits SIGINT ignored, and an
# ignored signal stays ignored across exec: every zcopy process a test starts would then shrug off the SIGINT
# the test sends to stop it, and the test would hang. A handler here is reset to the default in children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def make_file(path: Path, size: int, seed: int = 1) -> bytes:
    """A file of `size` pseudo-random bytes (repeatable), returned too for comparison."""
    block = (bytes(range(256)) * 257)[seed % 256 :][:65536]
    data = (block * (size // len(block) + 1))[:size]
    path.write_bytes(data)
    return data


class Drain:
    """A TCP receiver thread on 127.0.0.1 that reads everything and keeps it (or only counts it)."""

    def __init__(self, keep: bool = True) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.keep = keep
        self.data = bytearray()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:  # closed unused by a test that never connected
            return
        with conn:
            buf = bytearray(1 << 20)
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                self.count += n
                if self.keep:
                    self.data += buf[:n]

    def connect(self) -> socket.socket:
        return socket.create_connection(self.address)

    def wait(self) -> None:
        self.thread.join(timeout=60)
        self.listener.close()


@pytest.fixture
def drain() -> Iterator[Drain]:
    d = Drain()
    yield d
    d.listener.close()


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on 127.0.0.1 (client, server side)."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
    yield c, s
    c.close()
    s.close()


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """zcopy keeps measured disk rates in $XDG_CACHE_HOME/zcopy: every test (and the zcopy processes it starts)
    gets its own, never the machine user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture
def ddir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a disk file system, where O_DIRECT does real DMA (the direct route's tests)."""
    with disk_dir(tmp_path) as d:
        yield d
