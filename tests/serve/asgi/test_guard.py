"""Issue #20's guard of `zcopy serve --app` against a hostile client or a careless app, each case on the wire of a
real server subprocess: response splitting through app headers (F2), WebSocket peers that vanish (F1), upgrade
tokens (F3), clients that give up on a slow app (F5), request framing errors, body deadlines."""

from __future__ import annotations

from pathlib import Path

from .conftest import AppServer, make_data, read_until_close, response

APP = "tests.serve.asgi.apps:app"
UPGRADE = (
    b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
STATE = b"GET /state HTTP/1.1\r\nHost: x\r\n\r\n"


# -- F2: header fields are checked one by one ----------------------------------------------------------------
def test_response_splitting_by_an_echoed_header_is_a_500(server: AppServer) -> None:
    # A CR LF followed by a well-formed line passed the old check of the joined header block.
    for value in (b"hello%0D%0ASet-Cookie:%20session=attacker", b"x%0D%0ATransfer-Encoding:%20chunked",
                  b"a%0Ab", b"a%0Db", b"a%00b"):  # fmt: skip
        with server.connect() as s:
            s.sendall(b"GET /raw/echo-header?%s HTTP/1.1\r\nHost: x\r\n\r\n" % value + STATE)
            st, h, _, rest = response(s)
            assert st == 500 and "set-cookie" not in h and "transfer-encoding" not in h and "x-echo" not in h, value
            assert response(s, rest)[:3:2] == (200, b"hello from lifespan")  # nothing half-written: still in step
    with server.connect() as s:  # HTAB, SP and obs-text are field content
        s.sendall(b"GET /raw/echo-header?a%09b%20c%E9 HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, body, _ = response(s)
    assert st == 200 and body == b"ok" and h["x-echo"] == "a\tb c\xe9"


def test_bad_header_is_logged_with_its_name(tmp_path: Path) -> None:
    srv = AppServer(APP, make_data(tmp_path / "d"))
    try:
        with srv.connect() as s:
            s.sendall(b"GET /raw/echo-header?a%0D%0AX-Evil:%201 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert response(s)[0] == 500
    finally:
        _, err = srv.stop()
    assert "exception in ASGI application" in err and "invalid value for header b'x-echo'" in err, err


def test_websocket_headers_are_checked_too(server: AppServer) -> None:
    # The denial response and the 101's extra headers: a split value is the app's error (500), never written.
    for path in (b"/raw-ws/split-header", b"/raw-ws/accept-split-header"):
        with server.connect() as s:
            s.sendall(UPGRADE % path)
            got = read_until_close(s)
        assert got.startswith(b"HTTP/1.1 500 ") and b"set-cookie" not in got.lower(), (path, got)
