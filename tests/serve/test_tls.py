"""TLS under hostile clients: handshake deadline, counting from accept, truncation, stalls, shutdown."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest

from .conftest import Running, read_until_close, recv_response, wait_for
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


def test_silent_clients_are_cut_at_the_handshake_deadline_and_logged_once(
    serve: Serve, tls: ssl.SSLContext, capfd: pytest.CaptureFixture[str]
) -> None:
    r = serve(ssl=tls, header_timeout=0.5)
    silent = [r.connect() for _ in range(5)]  # TCP only: never a ClientHello
    for s in silent:
        # Cut by the server. The wait is 10x the deadline; the old server kept them 60 s (asyncio's default).
        assert read_until_close(s, 5.0) == b""
        s.close()
    assert wait_for(lambda: not r.server.connections)
    assert tls_get(r)[1] == b"hello world\n"  # and the server still serves
    err = capfd.readouterr().err
    assert err.count("zcopy serve:") == 1 and "TLS handshake timeout" in err, (
        err
    )  # once per cause, not once per connection


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
