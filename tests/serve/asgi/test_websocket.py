"""WebSockets through wsproto against real Starlette and FastAPI endpoints: handshake, echo, close codes, pings,
size limits, denial, a crashing handler, and a raw wsproto client on a plain socket (no client-side magic)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from .conftest import AppServer, make_data, read_until_close, response


class Client:
    """A wsproto client over a blocking socket: ``events()`` reads until at least one event arrives."""

    def __init__(self, server: AppServer, path: str, subprotocols: list[str] | None = None) -> None:
        self.sock = server.connect()
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="x", target=path, subprotocols=subprotocols or [])))

    def events(self) -> list[Any]:
        while True:
            got = list(self.ws.events())
            if got:
                return got
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            if not data:
                return list(self.ws.events()) or [None]

    def send(self, event: Any) -> None:
        self.sock.sendall(self.ws.send(event))

    def message(self) -> Any:
        parts: list[Any] = []
        while True:
            for ev in self.events():
                if isinstance(ev, (TextMessage, BytesMessage)):
                    parts.append(ev.data)
                    if ev.message_finished:
                        return ("" if isinstance(ev, TextMessage) else b"").join(parts)
                elif isinstance(ev, Ping):
                    self.send(ev.response())  # the server's keep-alive pings are answered, not returned
                else:
                    return ev

    def close(self) -> None:
        self.sock.close()


def events_of(server: AppServer) -> str:
    with server.connect() as s:
        s.sendall(b"GET /raw/events HTTP/1.1\r\nHost: x\r\n\r\n")
        return response(s)[2].decode()


def wait_event(server: AppServer, needle: str) -> str:
    deadline = time.monotonic() + 10
    got = ""
    while time.monotonic() < deadline:
        got = events_of(server)
        if needle in got:
            return got
        time.sleep(0.05)
    return got


def test_echo_text_bytes_and_scope(server: AppServer) -> None:
    c = Client(server, "/ws?x=1", subprotocols=["other", "echo.v1"])
    try:
        accepted = c.events()[0]
        assert isinstance(accepted, AcceptConnection) and accepted.subprotocol == "echo.v1"
        c.send(TextMessage(data="héllo"))
        assert c.message() == "héllo"
        c.send(BytesMessage(data=b"\x00\xff" * 40000))  # 80 KB: several frames' worth for the reader
        assert c.message() == b"\x00\xff" * 40000
        c.send(TextMessage(data="scope"))
        sc = json.loads(c.message())
        assert sc == {"type": "websocket", "scheme": "ws", "path": "/ws", "subprotocols": ["other", "echo.v1"],
                      "state": {"greeting": "hello from lifespan"}}  # fmt: skip
        c.send(TextMessage(data="fragmented ", message_finished=False))
        c.send(TextMessage(data="message", message_finished=True))
        assert c.message() == "fragmented message"
        c.send(Ping(payload=b"are you there"))
        assert c.events()[0] == Pong(payload=b"are you there")
        c.send(CloseConnection(code=1000, reason="bye"))
        ev = c.events()[0]
        assert isinstance(ev, CloseConnection) and ev.code == 1000
    finally:
        c.close()
    assert "ws-disconnect:1000" in wait_event(server, "ws-disconnect:1000")


def test_app_close_code_reaches_the_client(server: AppServer) -> None:
    c = Client(server, "/ws")
    try:
        assert isinstance(c.events()[0], AcceptConnection)
        c.send(TextMessage(data="close:4321"))
        ev = c.events()[0]
        assert isinstance(ev, CloseConnection) and ev.code == 4321 and ev.reason == "asked to"
        c.send(ev.response())
        assert c.sock.recv(100) == b""  # the server closes TCP after the close handshake
    finally:
        c.close()


def test_denied_before_accept_is_403(server: AppServer) -> None:
    c = Client(server, "/ws-deny")
    try:
        ev = c.events()[0]
        assert isinstance(ev, RejectConnection) and ev.status_code == 403
    finally:
        c.close()
    c = Client(server, "/no-such-ws-route")
    try:
        ev = c.events()[0]
        assert isinstance(ev, RejectConnection) and ev.status_code == 403  # Starlette closes unknown routes
    finally:
        c.close()


UPGRADE = (
    b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_denial_response_extension(server: AppServer) -> None:
    # Starlette's send_denial_response: the app's own status, headers and body instead of a bare 403.
    with server.connect() as s:
        s.sendall(UPGRADE % b"/ws-deny-401")
        status, headers, body, _ = response(s)
        assert (status, body, headers["www-authenticate"]) == (401, b"no token", "Bearer")
        assert headers["connection"] == "close"
        assert read_until_close(s) == b""  # and the connection ends there
    # By hand, streamed in two body messages (chunked); the app then receives websocket.disconnect.
    with server.connect() as s:
        s.sendall(UPGRADE % b"/raw-ws/two-parts")
        status, headers, body, _ = response(s)
        assert (status, headers["retry-after"], body) == (429, "7", b"slow down")
        assert read_until_close(s) == b""
    assert "ws-denied:websocket.disconnect" in wait_event(server, "ws-denied:")


def test_denial_response_cut_short_or_invalid(server: AppServer) -> None:
    # The app returns mid-body: the connection closes without the last chunk, so no client takes it as whole.
    with server.connect() as s:
        s.sendall(UPGRADE % b"/raw-ws/cut")
        got = read_until_close(s)
        assert got.startswith(b"HTTP/1.1 429 ") and b"5\r\nslow \r\n" in got and not got.endswith(b"0\r\n\r\n")
    # A status that is no final response, or a header h11 refuses, is the app's error (AppError raised into it):
    # the upgrade gets a 500 and the connection closes.
    for path in (b"/raw-ws/bad-status", b"/raw-ws/bad-header"):
        with server.connect() as s:
            s.sendall(UPGRADE % path)
            status, _, _, _ = response(s)
            assert status == 500
            assert read_until_close(s) == b""


def test_crash_inside_is_1011(server: AppServer) -> None:
    c = Client(server, "/ws")
    try:
        assert isinstance(c.events()[0], AcceptConnection)
        c.send(TextMessage(data="boom"))
        ev = c.events()[0]
        assert isinstance(ev, CloseConnection) and ev.code == 1011
    finally:
        c.close()


def test_client_vanishing_is_1006_for_the_app(server: AppServer) -> None:
    c = Client(server, "/ws")
    assert isinstance(c.events()[0], AcceptConnection)
    c.send(TextMessage(data="x"))
    assert c.message() == "x"
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    assert "ws-disconnect:1006" in wait_event(server, "ws-disconnect:1006")


def test_bad_handshake_is_400(server: AppServer) -> None:
    with server.connect() as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")  # no key
        st, _, _, _ = response(s)
    assert st == 400


def test_size_limit_and_pings(tmp_path: Path) -> None:
    s = AppServer(
        "tests.serve.asgi.apps:app", make_data(tmp_path), "--ws-max-size", "1000", "--ws-ping-interval", "0.2",
        "--ws-ping-timeout", "5",
    )  # fmt: skip
    try:
        c = Client(s, "/ws")
        try:
            assert isinstance(c.events()[0], AcceptConnection)
            ev = c.events()[0]  # we stay silent: the server pings us after 0.2 s
            assert isinstance(ev, Ping)
            c.send(ev.response())
            c.send(TextMessage(data="y" * 1000))
            assert c.message() == "y" * 1000  # at the limit: fine
            c.send(TextMessage(data="z" * 1001))
            ev = c.message()
            assert isinstance(ev, CloseConnection) and ev.code == 1009  # RFC 6455 §7.4.1: message too big
        finally:
            c.close()
    finally:
        assert s.stop()[0] == 0


def test_fastapi_websocket(tmp_path: Path) -> None:
    s = AppServer("tests.serve.asgi.apps:fastapi_app", make_data(tmp_path))
    try:
        c = Client(s, "/ws")
        try:
            assert isinstance(c.events()[0], AcceptConnection)
            c.send(TextMessage(data="shout"))
            assert c.message() == "SHOUT"
        finally:
            c.close()
    finally:
        assert s.stop()[0] == 0


@pytest.mark.parametrize("ws", ["none"])
def test_without_websockets_upgrade_is_plain_http(tmp_path: Path, ws: str) -> None:
    s = AppServer("tests.serve.asgi.apps:app", make_data(tmp_path), "--ws", ws)
    try:
        c = Client(s, "/state")
        try:
            ev = c.events()[0]
            assert isinstance(ev, RejectConnection) and ev.status_code == 200  # the app answered it as HTTP
        finally:
            c.close()
    finally:
        _, err = s.stop()
    assert "WebSocket upgrade answered as plain HTTP" in err
