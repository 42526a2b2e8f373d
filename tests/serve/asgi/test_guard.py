"""Issue #20's guard of `zcopy serve --app` against a hostile client or a careless app, each case on the wire of a
real server subprocess: response splitting through app headers (F2), WebSocket peers that vanish (F1), upgrade
tokens (F3), clients that give up on a slow app (F5), request framing errors, body deadlines."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import LOOPS
from .conftest import AppServer, make_data, read_until_close, recv_head, response

APP = "tests.serve.asgi.apps:app"
UPGRADE = (
    b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
MAX_CONNECTIONS = 8
WS_MAX = 1 << 16


@pytest.fixture(scope="module", params=LOOPS)
def guarded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """A server of its own (its EVENTS and fds are this module's) with a small --max-connections."""
    data = make_data(tmp_path_factory.mktemp("guard"))
    s = AppServer(APP, data, "--loop", str(request.param), "--max-connections", str(MAX_CONNECTIONS), "--grace", "0.5",
                 "--ws-max-size", str(WS_MAX), "--body-timeout", "1")  # fmt: skip
    yield s
    s.stop()


def fds(server: AppServer) -> int:
    return len(os.listdir(f"/proc/{server.pid}/fd"))


def settle(check: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Poll ``check`` until it holds (True) or ``seconds`` pass (False): the server works at its own pace."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def events(server: AppServer) -> str:
    with server.connect() as s:
        s.sendall(b"GET /raw/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return response(s)[2].decode()


def get_state(server: AppServer) -> int:
    with server.connect() as s:
        s.sendall(STATE)
        return response(s)[0]


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


# -- F1: a WebSocket peer that vanishes with a FIN -----------------------------------------------------------
def test_websocket_peer_vanishing_with_fin_is_released(guarded: AppServer) -> None:
    assert get_state(guarded) == 200
    base = fds(guarded)
    before = events(guarded).count("ws-disconnect:1006")
    n = 3 * MAX_CONNECTIONS  # more than the server can hold at once: every one must be released
    for i in range(n):
        with guarded.connect() as s:
            s.sendall(UPGRADE % b"/ws")
            assert recv_head(s)[0] == 101
            if i % 2:
                s.shutdown(socket.SHUT_WR)  # a half-close: the FIN alone, the socket still open for reading
                assert read_until_close(s) == b""  # the server closes its side too
        # (else: close() right after the 101, as the attack did)
    assert settle(lambda: events(guarded).count("ws-disconnect:1006") - before == n), events(guarded)
    assert settle(lambda: fds(guarded) <= base), (fds(guarded), base)
    assert get_state(guarded) == 200  # not full
    # The FIN before the app accepted: the app still gets its disconnect once it accepts or asks.
    with guarded.connect() as s:
        s.sendall(UPGRADE % b"/ws")
        s.shutdown(socket.SHUT_WR)
        got = read_until_close(s)
    assert got == b"" or got.startswith(b"HTTP/1.1 101 "), got
    assert settle(lambda: events(guarded).count("ws-disconnect:1006") - before == n + 1), events(guarded)
    assert settle(lambda: fds(guarded) <= base), (fds(guarded), base)


# -- F3: an upgrade needs the "upgrade" token ----------------------------------------------------------------
@pytest.mark.parametrize("connection", [b"keep-alive, upgraded", b"upgradex", b"x-upgrade", b"keep-alive"])
def test_upgrade_needs_the_token(server: AppServer, connection: bytes) -> None:
    # Not an upgrade: plain HTTP, answered in order with the request after it (uvicorn answers 200 too).
    head = UPGRADE.replace(b"Connection: Upgrade", b"Connection: " + connection) % b"/state"
    with server.connect() as s:
        s.sendall(head + b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        st, _, body, rest = response(s)
        assert (st, body) == (200, b"hello from lifespan")
        st, _, body, _ = response(s, rest)
        assert st == 200 and b'"path": "/scope"' in body.replace(b'":"', b'": "')


@pytest.mark.parametrize("connection", [b"keep-alive, Upgrade", b"UPGRADE", b"close ,upgrade"])
def test_upgrade_token_in_a_list(server: AppServer, connection: bytes) -> None:
    head = UPGRADE.replace(b"Connection: Upgrade", b"Connection: " + connection) % b"/ws"
    with server.connect() as s:
        s.sendall(head)
        assert recv_head(s)[0] == 101


# -- F5: a FIN while the app has not answered ---------------------------------------------------------------
def test_fin_while_the_app_never_answers_releases_the_connection(guarded: AppServer) -> None:
    assert get_state(guarded) == 200
    base = fds(guarded)
    before = events(guarded).count("never")
    n = MAX_CONNECTIONS + 2  # more than the server holds at once: the first ones must be let go
    socks = []
    for i in range(n):
        s = guarded.connect()
        s.sendall(b"GET /raw/never HTTP/1.1\r\nHost: x\r\n\r\n")
        if i % 2:
            s.close()  # FIN, and gone
        else:
            s.shutdown(socket.SHUT_WR)  # FIN, still reading: the server must end it
            socks.append(s)
    for s in socks:
        assert read_until_close(s, 30) == b""
        s.close()
    assert settle(lambda: events(guarded).count("never") - before == n), events(guarded)
    assert settle(lambda: fds(guarded) <= base), (fds(guarded), base)
    assert get_state(guarded) == 200


def test_half_closed_client_still_gets_a_prompt_answer(guarded: AppServer) -> None:
    with guarded.connect() as s:
        s.sendall(b"GET /raw/late?0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        out = read_until_close(s)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"late but here"), out


# -- WebSocket frame abuse -----------------------------------------------------------------------------------
def frame(opcode: int, payload: bytes, fin: bool) -> bytes:
    """One client frame (masked, as RFC 6455 §5.3 requires), payload < 126 bytes."""
    mask = b"\x11\x22\x33\x44"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + body


def next_frame(sock: socket.socket, buf: bytes) -> tuple[int, bytes, bytes]:
    """Read one short server frame: (opcode, payload, bytes after it)."""
    while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed inside a frame: {buf[:40]!r}")
        buf += chunk
    n = buf[1] & 0x7F
    assert n < 126, "this helper reads short frames only"
    return buf[0] & 0x0F, buf[2 : 2 + n], buf[2 + n :]


def close_code(sock: socket.socket, buf: bytes) -> int:
    """Read server frames until a close frame; its status code."""
    while True:
        op, payload, buf = next_frame(sock, buf)
        if op == 8:
            return int.from_bytes(payload[:2], "big")


def test_empty_continuation_frames_are_bounded(guarded: AppServer) -> None:
    from zcopy.serve.asgi.websocket import max_frames

    limit = max_frames(WS_MAX)
    with guarded.connect() as s:
        s.sendall(UPGRADE % b"/ws")
        st, _, rest = recv_head(s)
        assert st == 101
        s.sendall(frame(1, b"a", False) + frame(0, b"", False) * (limit + 10))
        assert close_code(s, rest) == 1009
    with guarded.connect() as s:  # below the bound, a fragmented message is whole
        s.sendall(UPGRADE % b"/ws")
        st, _, rest = recv_head(s)
        s.sendall(frame(1, b"a", False) + frame(0, b"", False) * (limit - 10) + frame(0, b"b", True))
        assert next_frame(s, rest)[:2] == (1, b"ab")  # the echo of the whole message


# -- --body-timeout: the longest gap between two pieces of a request body ------------------------------------
def test_stalled_body_times_out_and_the_app_sees_a_disconnect(guarded: AppServer) -> None:
    before = events(guarded).count("read-body:http.disconnect")
    with guarded.connect() as s:
        s.sendall(b"POST /raw/read-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        assert read_until_close(s, 30) == b""  # closed by the server, with no answer
    assert settle(lambda: events(guarded).count("read-body:http.disconnect") == before + 1), events(guarded)
    with guarded.connect() as s:  # chunked, the same
        s.sendall(b"POST /raw/read-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
        assert read_until_close(s, 30) == b""
    assert settle(lambda: events(guarded).count("read-body:http.disconnect") == before + 2), events(guarded)
    with guarded.connect() as s:  # a whole body is read, and answered
        s.sendall(b"POST /raw/read-body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        assert response(s)[2] == b"read"


# -- a mid-response disconnect storm ---------------------------------------------------------------------------
def test_mid_response_disconnect_storm_releases_everything(guarded: AppServer) -> None:
    import asyncio

    from ..storm import rss_kib, slow_readers

    assert get_state(guarded) == 200
    base, rss = fds(guarded), rss_kib(guarded.pid)[0]
    before = events(guarded).count("stream-forever-ended")
    n = MAX_CONNECTIONS - 2  # readers of an endless stream: they stall after 16 KiB, then leave all at once
    for rst in (False, True):  # FIN, then RST
        got = asyncio.run(slow_readers(guarded.addr, b"/stream-forever", n, rst=rst))
        assert got == (n, 0, 0)
    assert settle(lambda: events(guarded).count("stream-forever-ended") - before == 2 * n), events(guarded)
    assert settle(lambda: fds(guarded) <= base), (fds(guarded), base)
    assert rss_kib(guarded.pid)[0] < rss + (64 << 10), "64 MiB more resident after the storm"
    assert get_state(guarded) == 200
