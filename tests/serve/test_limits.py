"""Deadlines and limits under hostile or broken clients: slowloris, idle, max connections, truncation, aborts."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from .conftest import Running, open_fds, read_until_close, recv_response, wait_for

Serve = Callable[..., Running]


def test_slowloris_does_not_starve_others_and_is_cut(serve: Serve) -> None:
    r = serve(header_timeout=0.6)
    slow = []
    for _ in range(300):
        s = r.connect()
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(s)
    t0 = time.monotonic()
    c = r.connect()
    c.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    _, _, body, _ = recv_response(c)
    assert body == b"hello world\n"
    assert time.monotonic() - t0 < 0.5  # served promptly despite 300 half-open requests
    time.sleep(0.1)
    for s in slow:  # trickling more bytes does not extend the deadline
        s.sendall(b"a")
    assert wait_for(lambda: len(r.server.connections) <= 1, 3.0)
    for s in slow:
        assert read_until_close(s, 2.0) == b""
        s.close()
    c.close()


def test_idle_keepalive_timeout(serve: Serve) -> None:
    r = serve(keepalive_timeout=0.3)
    s = r.connect()
    s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    recv_response(s)
    t0 = time.monotonic()
    assert read_until_close(s, 3.0) == b""
    assert 0.25 < time.monotonic() - t0 < 2.0


def test_max_connections_accepts_later(serve: Serve) -> None:
    r = serve(max_connections=2)
    a, b = r.connect(), r.connect()
    a.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    recv_response(a)
    b.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    recv_response(b)
    c = r.connect(timeout=0.5)  # the kernel completes the handshake; we do not accept it yet
    c.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        c.recv(1)
        raise AssertionError("third connection served beyond --max-connections")
    except TimeoutError:
        pass
    a.close()
    c.settimeout(5)
    _, _, body, _ = recv_response(c)
    assert body == b"hello world\n"


def test_truncated_during_send_closes_and_keeps_serving(serve: Serve, site: Path) -> None:
    big = site / "big.bin"
    size = 64 << 20
    with open(big, "wb") as f:
        f.truncate(size)  # sparse: 64 MiB of zeros without the disk traffic
    r = serve()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # keep most of the body in the file, not in flight
    s.connect(r.addr)
    s.settimeout(10)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % size in first
    os.truncate(big, 1 << 20)
    got = len(first.partition(b"\r\n\r\n")[2]) + len(read_until_close(s, 10))
    assert got < size  # the connection closed short: the client can tell the body is incomplete
    s.close()
    c = r.connect()
    c.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert recv_response(c)[2] == b"hello world\n"


def test_stalled_reader_hits_send_timeout(serve: Serve, site: Path) -> None:
    with open(site / "big.bin", "wb") as f:
        f.truncate(64 << 20)
    r = serve(send_timeout=0.5)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.connect(r.addr)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_for(lambda: len(r.server.connections) == 0, 5.0)  # we never read: the server gave up
    s.close()


def test_aborts_mid_body_leak_no_fds(serve: Serve, site: Path) -> None:
    with open(site / "big.bin", "wb") as f:
        f.truncate(32 << 20)
    r = serve()
    warm = r.connect()  # populate the open-file cache first: its fds are meant to stay
    warm.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\n\r\n")
    recv_response(warm)
    warm.close()
    assert wait_for(lambda: not r.server.connections)
    before = open_fds()
    for i in range(20):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        s.connect(r.addr)
        req = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n%s\r\n" % (
            b"Range: bytes=0-10,20000-16000000\r\n" if i % 2 else b""
        )
        s.sendall(req)
        s.recv(1000)
        s.close()
    assert wait_for(lambda: not r.server.connections, 5.0)
    assert wait_for(lambda: open_fds() == before, 5.0), (open_fds(), before)
    entry = r.server.cache._groups[b"/big.bin"].base
    assert entry.refs == 0


def test_graceful_shutdown_finishes_in_flight(serve: Serve, site: Path) -> None:
    with open(site / "big.bin", "wb") as f:
        f.truncate(16 << 20)
    r = serve()
    idle = r.connect()
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    busy.connect(r.addr)
    busy.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    first = busy.recv(65536)
    assert wait_for(lambda: len(r.server.connections) == 2)
    r.loop.call_soon_threadsafe(r.server.close)
    assert read_until_close(idle, 3) == b""  # idle connection closed at once
    with socket.socket() as late:  # no longer accepting
        assert late.connect_ex(r.addr) != 0
    rest = read_until_close(busy, 10)
    assert len(first.partition(b"\r\n\r\n")[2]) + len(rest) == 16 << 20  # in-flight response finished


def test_file_replaced_during_response_is_consistent(serve: Serve, site: Path) -> None:
    """os.replace() a file mid-download: that response is all old bytes; the next one all new (new ETag)."""
    old, new = os.urandom(8 << 20), os.urandom(8 << 20)
    (site / "v.bin").write_bytes(old)
    r = serve(cache_valid=0.0)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.connect(r.addr)
    s.settimeout(10)
    s.sendall(b"GET /v.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.recv(65536)
    (site / "v.tmp").write_bytes(new)
    os.replace(site / "v.tmp", site / "v.bin")
    s.sendall(b"GET /v.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    head1, _, body = first.partition(b"\r\n\r\n")
    while len(body) < len(old):
        body += s.recv(1 << 20)
    rest = body[len(old) :]
    assert body[: len(old)] == old
    _st, h, body2, _ = recv_response(_Prefixed(s, rest))  # type: ignore[arg-type]
    assert body2 == new
    etag1 = next(line for line in head1.split(b"\r\n") if line.startswith(b"ETag:")).split(b": ")[1]
    assert h[b"etag"] != etag1


class _Prefixed:
    def __init__(self, sock: socket.socket, buf: bytes) -> None:
        self.sock, self.buf = sock, buf

    def recv(self, n: int) -> bytes:
        if self.buf:
            b, self.buf = self.buf, b""
            return b
        return self.sock.recv(n)
