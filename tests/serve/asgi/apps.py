"""ASGI applications the tests serve in a real `zcopy serve --app` subprocess: Starlette, FastAPI and raw ASGI.

``app`` dispatches /raw/* to small raw ASGI handlers (each breaks or exercises one protocol rule) and everything
else, lifespan included, to a real Starlette application. ``ZCOPY_TEST_DATA`` names the directory of test files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

DATA = os.environ.get("ZCOPY_TEST_DATA", "/nonexistent")
EVENTS: list[str] = []  # what happened, in order (lifespan, disconnects), read back through /raw/events
RELEASE = asyncio.Event()  # the slow upload handler waits for this (set through /raw/release)
RECEIVED = [0]  # bytes the slow upload handler has taken so far


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    EVENTS.append("startup")
    if os.environ.get("ZCOPY_TEST_FAIL_STARTUP"):
        raise RuntimeError("database unreachable")
    yield {"greeting": "hello from lifespan"}
    EVENTS.append("shutdown")
    path = os.environ.get("ZCOPY_TEST_SHUTDOWN_FILE")
    if path:
        with open(path, "w") as f:
            f.write(",".join(EVENTS))


async def scope_view(request: Request) -> JSONResponse:
    s = request.scope
    return JSONResponse(
        {
            "type": s["type"],
            "asgi": s["asgi"],
            "http_version": s["http_version"],
            "method": s["method"],
            "scheme": s["scheme"],
            "path": s["path"],
            "raw_path": s["raw_path"].decode("latin-1"),
            "query_string": s["query_string"].decode("latin-1"),
            "root_path": s["root_path"],
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in s["headers"]],
            "client": list(s["client"]) if s["client"] else None,
            "server": list(s["server"]) if s["server"] else None,
            "state": dict(s.get("state", {})),
            "extensions": sorted(s.get("extensions", {})),
        }
    )


async def file_view(request: Request) -> FileResponse:
    return FileResponse(os.path.join(DATA, request.path_params["name"]))


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def stream(request: Request) -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"chunk%d\n" % i

    return StreamingResponse(gen(), media_type="text/plain")


async def stream_forever(request: Request) -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"y" * 65536
        finally:
            EVENTS.append("stream-forever-ended")

    return StreamingResponse(gen(), media_type="text/plain")


async def state_view(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.state.greeting)


async def ws_echo(ws: WebSocket) -> None:
    """Echoes text and bytes; "close:CODE" closes with that code; records how the peer left."""
    await ws.accept(subprotocol="echo.v1" if "echo.v1" in ws.scope["subprotocols"] else None)
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                EVENTS.append(f"ws-disconnect:{msg.get('code')}")
                return
            if msg.get("text") is not None:
                text = msg["text"]
                if text.startswith("close:"):
                    await ws.close(int(text[6:]), reason="asked to")
                    return
                if text == "scope":
                    s = ws.scope
                    await ws.send_json({"type": s["type"], "scheme": s["scheme"], "path": s["path"],
                                        "subprotocols": s["subprotocols"], "state": dict(s.get("state", {}))})
                    continue
                if text == "boom":
                    raise RuntimeError("boom inside a WebSocket")
                await ws.send_text(text)
            else:
                await ws.send_bytes(msg["bytes"])
    except WebSocketDisconnect as exc:
        EVENTS.append(f"ws-disconnect:{exc.code}")


async def ws_deny(ws: WebSocket) -> None:
    await ws.close()  # before accept: the upgrade is refused with 403


async def ws_deny_401(ws: WebSocket) -> None:
    # Starlette uses the websocket.http.response extension when the server advertises it.
    denial = PlainTextResponse("no token", status_code=401, headers={"WWW-Authenticate": "Bearer"})
    await ws.send_denial_response(denial)


starlette_app = Starlette(
    routes=[
        Route("/scope", scope_view, methods=["GET", "POST", "HEAD", "OPTIONS", "DELETE"]),
        Route("/file/{name}", file_view),
        Route("/echo", echo, methods=["POST", "PUT"]),
        Route("/stream", stream),
        Route("/stream-forever", stream_forever),
        Route("/state", state_view),
        WebSocketRoute("/ws", ws_echo),
        WebSocketRoute("/ws-deny", ws_deny),
        WebSocketRoute("/ws-deny-401", ws_deny_401),
    ],
    lifespan=lifespan,
)


# -- raw ASGI handlers: one protocol rule each ---------------------------------------------------------------
async def _start(send: Any, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})


async def _text(send: Any, body: bytes, status: int = 200) -> None:
    await _start(send, status, [(b"content-type", b"text/plain")])
    await send({"type": "http.response.body", "body": body})


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    query = scope["query_string"].decode()
    if path == "/raw/boom-before":
        raise RuntimeError("boom before the response started")
    if path == "/raw/boom-after":
        await _start(send, 200, [(b"content-length", b"100")])
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        raise RuntimeError("boom after the response started")
    if path == "/raw/short":
        await _start(send, 200, [(b"content-length", b"10")])
        await send({"type": "http.response.body", "body": b"12345"})
        return
    if path == "/raw/long":
        await _start(send, 200, [(b"content-length", b"3")])
        await send({"type": "http.response.body", "body": b"12345"})
        return
    if path == "/raw/noreply":
        return
    if path == "/raw/pathsend":
        await _start(send, 200, [(b"content-type", b"application/octet-stream")])
        await send({"type": "http.response.pathsend", "path": os.path.join(DATA, query)})
        return
    if path == "/raw/zerocopy":
        # A hand-made two-part body: bytes, a slice of the file by offset/count, bytes, the rest from position.
        with open(os.path.join(DATA, "data.bin"), "rb") as f:
            f.seek(1000)
            await _start(send, 200, [(b"content-type", b"application/octet-stream")])
            await send({"type": "http.response.body", "body": b"<", "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": f, "offset": 10, "count": 20, "more_body": True})
            await send({"type": "http.response.body", "body": b"|", "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": f, "count": 100, "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": f, "count": 5, "more_body": True})
            await send({"type": "http.response.body", "body": b">", "more_body": False})
        return
    if path == "/raw/wait-disconnect":
        await _start(send, 200, [(b"content-type", b"text/plain")])
        await send({"type": "http.response.body", "body": b"waiting\n", "more_body": True})
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                EVENTS.append("disconnect")
                return
    if path == "/raw/stream-until-gone":
        # Streams until send() fails: ASGI 2.4 says that is an OSError once the client is gone.
        await _start(send, 200, [(b"content-type", b"text/plain")])
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        except OSError as exc:
            EVENTS.append(f"send-raised:{type(exc).__name__}")
        return
    if path == "/raw/slow-upload":
        # Takes one body message, then waits until released: the server must stop reading meanwhile.
        total = 0
        first = True
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            total += len(msg["body"])
            RECEIVED[0] = total
            if first:
                first = False
                await RELEASE.wait()
            if not msg.get("more_body"):
                break
        await _text(send, b"%d" % total)
        return
    if path == "/raw/release":
        RELEASE.set()
        await _text(send, b"%d" % RECEIVED[0])
        return
    if path == "/raw/received":
        await _text(send, b"%d" % RECEIVED[0])
        return
    if path == "/raw/body-messages":
        # Reports every http.request message it got (size, more_body): streaming visible from outside.
        out = []
        while True:
            msg = await receive()
            out.append(f"{len(msg.get('body', b''))}:{int(bool(msg.get('more_body')))}")
            if not msg.get("more_body"):
                break
        await _text(send, ",".join(out).encode())
        return
    if path == "/raw/respond-early":
        await _text(send, b"no thanks", 413)  # answers without reading the body
        return
    if path == "/raw/events":
        await _text(send, ",".join(EVENTS).encode())
        return
    if path == "/raw/sleep":
        EVENTS.append("sleeping")
        await asyncio.sleep(float(query or "0.5"))
        await _text(send, b"slept")
        return
    if path == "/raw/bad-header":
        await _start(send, 200, [(b"x-bad", b"a\r\nInjected: yes")])
        return
    if path == "/raw/never":
        # Never answers and never asks: only the server can notice that the client has gone.
        EVENTS.append("never")
        await asyncio.Event().wait()
    if path == "/raw/late":
        # Answers after a short while without looking at receive(): a half-closed client still gets it.
        await asyncio.sleep(float(query or "0.3"))
        await _text(send, b"late but here")
        return
    if path == "/raw/read-body":
        # Reads the whole body, recording how it ended (complete, or the server's http.disconnect).
        while True:
            msg = await receive()
            if msg["type"] != "http.request" or not msg.get("more_body"):
                EVENTS.append(f"read-body:{msg['type']}")
                break
        await _text(send, b"read")
        return
    if path == "/raw/echo-header":
        # An app that echoes input into a header (a redirect, a filename): the query string is the value.
        from urllib.parse import unquote_to_bytes

        await _start(send, 200, [(b"x-echo", unquote_to_bytes(query)), (b"content-length", b"2")])
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await _text(send, b"no such raw route", 404)


async def raw_ws(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Denial responses sent by hand: streamed in two body messages, cut short, or with a bad status."""
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/raw-ws/bad-status":
        await send({"type": "websocket.http.response.start", "status": 101, "headers": []})
        return
    if path == "/raw-ws/bad-header":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"bad name", b"x")]})
        return
    if path == "/raw-ws/split-header":
        bad = b"x\r\nSet-Cookie: session=attacker"
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-echo", bad)]})
        return
    if path == "/raw-ws/accept-split-header":
        await send({"type": "websocket.accept", "headers": [(b"x-echo", b"x\r\nSet-Cookie: session=attacker")]})
        return
    await send({"type": "websocket.http.response.start", "status": 429, "headers": [(b"retry-after", b"7")]})
    await send({"type": "websocket.http.response.body", "body": b"slow ", "more_body": True})
    if path == "/raw-ws/cut":
        return  # mid-way: the client must not take a partial body for a whole one
    await send({"type": "websocket.http.response.body", "body": b"down"})
    EVENTS.append(f"ws-denied:{(await receive())['type']}")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith("/raw/"):
        await raw(scope, receive, send)
    elif scope["type"] == "websocket" and scope["path"].startswith("/raw-ws/"):
        await raw_ws(scope, receive, send)
    else:
        await starlette_app(scope, receive, send)


# -- FastAPI -----------------------------------------------------------------------------------------------
fastapi_app = FastAPI()


class Item(BaseModel):
    name: str
    count: int


@fastapi_app.get("/json")
async def fa_json() -> dict[str, str]:
    return {"framework": "fastapi"}


@fastapi_app.post("/items")
async def fa_items(item: Item) -> dict[str, Any]:
    return {"name": item.name, "double": item.count * 2}


@fastapi_app.websocket("/ws")
async def fa_ws(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        try:
            data = await ws.receive_text()
        except WebSocketDisconnect:
            return
        await ws.send_text(data.upper())


@fastapi_app.get("/file/{name}")
async def fa_file(name: str) -> FileResponse:
    return FileResponse(os.path.join(DATA, name))


def make_app() -> Starlette:
    """An app factory (for --factory)."""
    return Starlette(routes=[Route("/factory", lambda r: PlainTextResponse("made by a factory"))])
