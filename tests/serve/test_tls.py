"""TLS under hostile clients: handshake deadline, counting from accept, truncation, stalls, shutdown."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Running, listening_here, read_until_close, recv_response, wait_for
from .deadlines import CONTROL, SHORT, assert_on_time, dropped_after
from .tlsfiles import client_context, make_cert, server_context

Serve = Callable[..., Running]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return server_context(*make_cert(tmp_path_factory.mktemp("tls")))


def tls_get(r: Running, path: str = "/hello.txt", timeout: float = 5.0) -> tuple[bytes, bytes]:
    raw = r.connect(timeout)
    s = client_context().wrap_socket(raw)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    status, _, body, _ = recv_response(s)  # type: ignore[arg-type]
    s.close()
    return status, body


def _silent(r: Running) -> socket.socket:
    s = r.connect()  # TCP only: never a ClientHello
    assert wait_for(lambda: len(r.server.connections) == 1)  # accepted: the handshake deadline runs
    return s


def test_silent_clients_are_cut_at_the_handshake_deadline_and_logged_once(
    serve: Serve, tls: ssl.SSLContext, capfd: pytest.CaptureFixture[str]
) -> None:
    # Cut by the server on time, next to a control with a longer deadline (the old server kept them 60 s,
    # asyncio's default).
    servers = [serve(ssl=tls, header_timeout=SHORT), serve(ssl=tls, header_timeout=CONTROL)]
    assert_on_time(SHORT, CONTROL, dropped_after(servers, _silent, cap=20.0))
    r = servers[0]
    silent = [r.connect() for _ in range(5)]
    for s in silent:
        assert read_until_close(s, 20.0) == b""
        s.close()
    assert wait_for(lambda: not r.server.connections)
    assert tls_get(r)[1] == b"hello world\n"  # and the server still serves
    err = capfd.readouterr().err
    # Once per cause and server, not once per connection.
    assert err.count("zcopy serve:") == 2 and err.count("TLS handshake timeout (not done within") == 2, err


def test_handshaking_connections_count_against_max_connections(serve: Serve, tls: ssl.SSLContext) -> None:
    r = serve(ssl=tls, max_connections=2)  # handshake deadline: header_timeout's 10 s
    a, b = r.connect(), r.connect()  # accepted, handshake never started
    assert wait_for(lambda: len(r.server.connections) == 2)
    c = r.connect(timeout=0.5)
    wrapped = client_context().wrap_socket(c, do_handshake_on_connect=False)
    with pytest.raises((TimeoutError, ssl.SSLError)):
        wrapped.do_handshake()  # left in the kernel's backlog: nobody answers the ClientHello yet
    wrapped.close()
    a.close()  # a slot frees up: the next connection is accepted and served
    b.close()
    assert tls_get(r)[1] == b"hello world\n"


def test_not_tls_is_closed_and_logged_once(
    serve: Serve, tls: ssl.SSLContext, capfd: pytest.CaptureFixture[str]
) -> None:
    r = serve(ssl=tls)
    for _ in range(3):
        s = r.connect()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_until_close(s, 5.0)
        s.close()
    assert wait_for(lambda: not r.server.connections)
    err = capfd.readouterr().err
    assert err.count("zcopy serve:") == 1 and "TLS handshake failed" in err, err
    assert tls_get(r)[1] == b"hello world\n"


def _tls_download(r: Running, path: str, rcvbuf: int = 64 << 10) -> tuple[ssl.SSLSocket, bytes]:
    """A TLS GET with a small receive buffer, so most of a big body is still on the server when this returns
    the first bytes (head included)."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.connect(r.addr)
    raw.settimeout(10)
    s = client_context().wrap_socket(raw)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return s, s.recv(65536)


def _read_rest(s: ssl.SSLSocket) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = s.recv(1 << 20)
        except (ssl.SSLError, ConnectionError):  # an aborted TLS stream: no close_notify
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def test_tls_truncated_file_closes_that_connection_only(
    serve: Serve, site: Path, tls: ssl.SSLContext, capfd: pytest.CaptureFixture[str]
) -> None:
    big = site / "big.bin"
    size = 64 << 20
    with open(big, "wb") as f:
        f.truncate(size)
    r = serve(ssl=tls)
    s, first = _tls_download(r, "/big.bin")
    assert first.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % size in first
    os.truncate(big, 1 << 20)
    got = len(first.partition(b"\r\n\r\n")[2]) + len(_read_rest(s))
    s.close()
    assert got < size  # closed short: the client can tell the body is incomplete
    assert tls_get(r)[1] == b"hello world\n"  # the server goes on
    assert "truncated" in capfd.readouterr().err


def _stalled_tls_download(r: Running) -> socket.socket:
    s, first = _tls_download(r, "/big.bin")
    assert first.startswith(b"HTTP/1.1 200")  # accepted and sending...
    return s  # ...and never read again


def test_tls_stalled_reader_hits_send_timeout(serve: Serve, site: Path, tls: ssl.SSLContext) -> None:
    with open(site / "big.bin", "wb") as f:
        f.truncate(64 << 20)
    servers = [serve(ssl=tls, send_timeout=SHORT), serve(ssl=tls, send_timeout=CONTROL)]
    assert_on_time(SHORT, CONTROL, dropped_after(servers, _stalled_tls_download, cap=20.0))


def test_tls_graceful_shutdown(serve: Serve, site: Path, tls: ssl.SSLContext) -> None:
    size = 16 << 20
    with open(site / "big.bin", "wb") as f:
        f.truncate(size)
    r = serve(ssl=tls)
    idle = client_context().wrap_socket(r.connect())  # handshake done, no request
    busy, first = _tls_download(r, "/big.bin")  # a response in flight
    handshaking = r.connect()  # TCP only: still in its handshake
    assert wait_for(lambda: len(r.server.connections) == 3)
    r.loop.call_soon_threadsafe(r.server.close)
    assert _read_rest(idle) == b""  # closed at once
    assert read_until_close(handshaking, 5.0) == b""  # so is the unfinished handshake
    assert not listening_here(r.addr[1])  # no longer accepting
    rest = _read_rest(busy)
    assert len(first.partition(b"\r\n\r\n")[2]) + len(rest) == size  # the in-flight response finished
    for s in (idle, busy, handshaking):
        s.close()
