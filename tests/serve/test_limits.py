"""Deadlines and limits under hostile or broken clients: slowloris, idle, max connections, truncation, aborts."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path

from .conftest import Running, listening_here, read_until_close, recv_response, server_fds, wait_for
from .deadlines import CONTROL, SHORT, assert_on_time, dropped_after

Serve = Callable[..., Running]


def test_slowloris_does_not_starve_others(serve: Serve) -> None:
    r = serve(header_timeout=60.0)  # long: all 300 are surely still open when the normal client is served
    slow = []
    for _ in range(300):
        s = r.connect()
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(s)
    assert wait_for(lambda: len(r.server.connections) == 300)
    c = r.connect()
    c.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    _, _, body, _ = recv_response(c)
    assert body == b"hello world\n"
    assert len(r.server.connections) == 301  # served while every half-open request was still held
    for s in slow:
        s.close()
    c.close()


def _trickling_head(r: Running) -> socket.socket:
    s = r.connect()
    s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert wait_for(lambda: len(r.server.connections) == 1)
    return s


def _trickle(s: socket.socket) -> None:
    with contextlib.suppress(OSError):  # EPIPE/ECONNRESET once the server cut it
        s.send(b"a")


def test_trickled_head_is_cut_at_the_deadline_from_its_first_byte(serve: Serve) -> None:
    """Bytes keep coming every 0.1 s; the whole head is due `header_timeout` after its first byte, so the server
    must cut the connection while the trickle goes on. A server that restarted its timer on each byte never would;
    one that cut it late is cut with (or after) the control."""
    servers = [serve(header_timeout=SHORT), serve(header_timeout=CONTROL)]
    assert_on_time(SHORT, CONTROL, dropped_after(servers, _trickling_head, tick=_trickle, cap=20.0))


def _idle_after_a_response(r: Running) -> socket.socket:
    s = r.connect()
    s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    recv_response(s)  # the server holds it, idle, from here
    return s


def test_idle_keepalive_timeout(serve: Serve) -> None:
    servers = [serve(keepalive_timeout=SHORT), serve(keepalive_timeout=CONTROL)]
    assert_on_time(SHORT, CONTROL, dropped_after(servers, _idle_after_a_response, cap=20.0))


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


def _stalled_download(r: Running) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # most of the body stays on the server
    s.connect(r.addr)
    s.settimeout(10)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")  # accepted and sending...
    return s  # ...and never read again


def test_stalled_reader_hits_send_timeout(serve: Serve, site: Path) -> None:
    with open(site / "big.bin", "wb") as f:
        f.truncate(64 << 20)
    servers = [serve(send_timeout=SHORT), serve(send_timeout=CONTROL)]
    assert_on_time(SHORT, CONTROL, dropped_after(servers, _stalled_download, cap=20.0))


def test_aborts_mid_body_leak_no_fds(serve: Serve, site: Path) -> None:
    with open(site / "big.bin", "wb") as f:
        f.truncate(32 << 20)
    r = serve()
    warm = r.connect()  # populate the open-file cache first: its fds are meant to stay
    warm.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\n\r\n")
    recv_response(warm)
    warm.close()
    assert wait_for(lambda: not r.server.connections)
    before = server_fds(r, site)  # the listener and the cached file
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
    assert wait_for(lambda: server_fds(r, site) == before, 5.0), (server_fds(r, site), before)
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
    assert listening_here(r.addr[1])
    r.loop.call_soon_threadsafe(r.server.close)
    assert read_until_close(idle, 3) == b""  # idle connection closed at once
    assert not listening_here(r.addr[1])  # no longer accepting (its port may be anyone's now: not connected to)
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
    buf = bytearray(body)
    while len(buf) < len(old):
        buf += s.recv(1 << 20)
    body = bytes(buf)
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
