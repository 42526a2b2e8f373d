"""Failures inside the server: a handler bug costs one response (500), never the connection or the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from zcopy.serve.handler import Request, Response

from .conftest import Running, recv_response

Serve = Callable[..., Running]


def test_handler_exception_is_a_500_and_the_connection_stays_usable(
    serve: Serve, capfd: pytest.CaptureFixture[str]
) -> None:
    r = serve()
    handler = r.server.handler
    real = handler.handle

    def buggy(req: Request) -> Response:  # a bug for one path only: the fault injected, the rest is real
        if req.target == b"/boom":
            raise RuntimeError("injected bug")
        return real(req)

    handler.handle = buggy  # type: ignore[method-assign]
    s = r.connect()
    for target, status, body in ((b"/boom", b"500", None), (b"/hello.txt", b"200", b"hello world\n")):
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        line, headers, got, _ = recv_response(s)
        assert line.split()[1] == status, line
        assert headers.get(b"connection") != b"close"
        if body is not None:
            assert got == body
    # Pipelined behind a failing request, the next one is still answered in order on the same connection.
    s.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    line1, _, _, rest = recv_response(s)
    assert line1.split()[1] == b"500"
    line2, _, got, _ = recv_response(_Prefix(s, rest))  # type: ignore[arg-type]
    assert line2.split()[1] == b"200" and got == b"hello world\n"
    s.close()
    err = capfd.readouterr().err
    assert "handler failed" in err and "RuntimeError: injected bug" in err


class _Prefix:
    def __init__(self, sock: Any, buf: bytes) -> None:
        self.sock, self.buf = sock, buf

    def recv(self, n: int) -> bytes:
        if self.buf:
            b, self.buf = self.buf, b""
            return b
        return bytes(self.sock.recv(n))
