"""Small apps for the uvicorn-compatibility tests: plain ASGI 3, a factory, ASGI 2, WSGI (no framework needed)."""

from __future__ import annotations

import contextvars
import json
import os
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
