"""Small apps for the uvicorn-compatibility tests: plain ASGI 3, a factory, ASGI 2, WSGI (no framework needed);
and the raw WebSocket handshake those tests send."""

from __future__ import annotations

import base64
import contextvars
import json
import os
import socket
from collections.abc import Iterable
from typing import Any

# Set at import, in the main thread's context: every request sees "import", unless --reset-contextvars gives each
# request a fresh context.
marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="fresh")
marker.set("import")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/json → {"env": $UVAPP_ENV, "marker": the context's marker, "path"}; /ws accepts and echoes one message;
    /ws-deny closes before accepting (403);
    /teapot → 418; /boom raises."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()
        if scope["path"] == "/ws-deny":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
            await receive()
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    if scope["path"] == "/teapot":
        await send({"type": "http.response.start", "status": 418, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps({"env": os.environ.get("UVAPP_ENV"), "marker": marker.get(), "path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def factory() -> Any:
    return app


class Asgi2:
    """An ASGI 2 application: instantiated with the scope, then awaited with receive and send."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"asgi2"})


def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """/file → the file named by $UVAPP_FILE through wsgi.file_wrapper; else echo of the method, path and body."""
    if environ["PATH_INFO"] == "/file":
        path = os.environ["UVAPP_FILE"]
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(os.path.getsize(path)))])  # fmt: skip
        return environ["wsgi.file_wrapper"](open(path, "rb"))
    body = environ["wsgi.input"].read()
    text = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}?{environ['QUERY_STRING']} {body.decode()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


def upgrade(sock: socket.socket, path: str = "/ws", extra: str = "") -> tuple[bytes, bytes]:
    """Send a WebSocket upgrade request; (the response head, bytes after it). ``extra``: more header lines."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest
