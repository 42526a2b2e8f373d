"""ASGI WebSockets through wsproto (sans-I/O): the HTTP connection hands over the parsed head and leftover bytes.

wsproto is the optional ``zcopy[asgi]`` extra: HTTP apps need nothing beyond the core, and without it an upgrade
request reaches the app as plain HTTP (one warning in the log says why). Phases, one table (``SEND``):
CONNECTING (the app got ``websocket.connect``) → OPEN (it sent ``websocket.accept``: 101) → CLOSING (a close frame
went out, waiting for the peer's) → CLOSED. ``websocket.close`` before accept answers 403; the denial-response
extension (``websocket.http.response.start`` + ``.body`` before accept, advertised in the scope) lets the app
answer the upgrade with its own HTTP response (RESPONDING until the body is complete). Messages above
``ws_max_size``, or in more than ``max_frames(ws_max_size)`` frames, close with 1009; a close frame from the
peer is answered and reaches the app as ``websocket.disconnect`` with its code; a lost connection as 1006.
Pings are answered; ours go every ``ws_ping_interval`` s and a pong must come within ``ws_ping_timeout`` s.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from zcopy.serve import fields
from zcopy.serve.accesslog import client_addr, full_path
from zcopy.serve.asgi.cycle import AppError
from zcopy.serve.asgi.errors import ClientDisconnected

if TYPE_CHECKING:
    from zcopy.serve.asgi.http import Connection

# uvicorn's lines for a WebSocket go to its server logger (logconfig.py), at info: accepted, refused, closed.
_log = logging.getLogger("uvicorn.error")
CLOSE_TIMEOUT = 5.0  # after our close frame, how long the peer has to answer before the TCP connection is cut


def max_frames(max_size: int) -> int:
    """Frames one message may arrive in: what holding its pieces costs is bounded with its size (an empty
    continuation frame is 6 bytes on the wire and would otherwise cost a list slot each, unbounded)."""
    return 1024 + max_size // 64


def bounded_deflate(limit: int) -> Any:
    """wsproto's permessage-deflate, with a bound on what one message may inflate to. wsproto inflates all that
    one read brings, unbounded: a few KiB of zeros could become hundreds of MiB before --ws-max-size is checked.
    Here inflating stops at ``limit`` + 1 bytes per message, and the peer gets 1009 (message too big)."""
    import zlib

    from wsproto.extensions import PerMessageDeflate
    from wsproto.frame_protocol import CloseReason

    class Bounded(PerMessageDeflate):
        inflated = 0  # bytes of the current message so far

        def frame_inbound_payload_data(self, proto: Any, data: bytes) -> Any:
            if not self._inbound_compressed or not self._inbound_is_compressible:
                return data
            inflate = self._decompressor
            assert inflate is not None  # made by frame_inbound_header for a compressed frame
            try:
                out = inflate.decompress(bytes(data), limit - self.inflated + 1)
            except zlib.error:
                return CloseReason.INVALID_FRAME_PAYLOAD_DATA
            self.inflated += len(out)
            if self.inflated > limit or inflate.unconsumed_tail:
                return CloseReason.MESSAGE_TOO_BIG
            return out

        def frame_inbound_complete(self, proto: Any, fin: bool) -> Any:
            if fin:
                self.inflated = 0
            return super().frame_inbound_complete(proto, fin)

    return Bounded()


@functools.cache
def available() -> bool:
    """Is wsproto (the zcopy[asgi] extra) importable? Asked once per process."""
    try:
        import wsproto  # noqa: F401
    except ImportError:
        return False
    return True


def is_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    """A WebSocket upgrade request: ``Upgrade: websocket`` with ``upgrade`` as one of the comma-separated tokens
    of ``Connection`` (RFC 6455 §4.2.1, RFC 9110 §7.6.1), case-insensitive; "upgraded" is not "upgrade"."""
    upgrade = connection = False
    for name, value in headers:
        if name == b"upgrade":
            upgrade = upgrade or value.strip().lower() == b"websocket"
        elif name == b"connection":
            connection = connection or any(t.strip() == b"upgrade" for t in value.lower().split(b","))
    return upgrade and connection


class Phase(enum.Enum):
    CONNECTING = "connecting"
    RESPONDING = "responding"  # a denial response (websocket.http.response.*) is under way
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# (phase, ASGI message type) → handler. Anything else is the app's protocol error (AppError).
SEND: dict[tuple[Phase, str], str] = {
    (Phase.CONNECTING, "websocket.accept"): "_accept",
    (Phase.CONNECTING, "websocket.close"): "_deny",
    (Phase.CONNECTING, "websocket.http.response.start"): "_deny_start",
    (Phase.RESPONDING, "websocket.http.response.body"): "_deny_body",
    (Phase.OPEN, "websocket.send"): "_message",
    (Phase.OPEN, "websocket.close"): "_close",
}


class WebSocket:
    """One upgraded connection: wsproto state, the queue the app receives from, and its send()."""

    def __init__(self, conn: Connection, scope: dict[str, Any], headers: list[tuple[bytes, bytes]], target: bytes,
                 leftover: bytes) -> None:  # fmt: skip
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import Request
        from wsproto.utilities import RemoteProtocolError

        self.conn = conn
        self.scope = scope
        cfg = conn.config
        self.max_size = cfg.ws_max_size
        self.max_frames = max_frames(cfg.ws_max_size)
        self.ping_interval = cfg.ws_ping_interval
        self.ping_timeout = cfg.ws_ping_timeout
        self.max_queue = cfg.ws_max_queue  # messages from the peer queued for the app before reading pauses
        self.deflate = cfg.ws_per_message_deflate
        self.opened = False  # accepted and not yet reported closed (the "connection closed" line)
        self.ws = WSConnection(ConnectionType.SERVER)
        self.phase = Phase.CONNECTING
        self.incoming: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.leftover = leftover
        self.eof_pending = False  # the peer's FIN came before the app accepted: fed to wsproto after the 101
        self.close_code = 1006
        self.close_reason = ""
        self.handshake_ok = True
        self._parts: list[Any] = []
        self._size = 0
        self._frames = 0  # frames of the message being received (empty continuation frames count too)
        self._lock = asyncio.Lock()  # frames are written whole, one writer at a time (pongs vs app messages)
        self._pinged_at = 0.0
        self._ping_timer: asyncio.TimerHandle | None = None
        try:
            self.ws.initiate_upgrade_connection(headers, target)
            request = next(iter(self.ws.events()), None)
            self.handshake_ok = isinstance(request, Request)
        except RemoteProtocolError:
            self.handshake_ok = False  # e.g. no Sec-WebSocket-Key or a version other than 13: answered 400
        self.incoming.append({"type": "websocket.connect"})

    # -- the app's side -------------------------------------------------------------------------------
    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def receive(self) -> dict[str, Any]:
        while not self.incoming:
            if self.phase is Phase.CLOSED or (self.eof_pending and self.phase is Phase.CONNECTING):
                return {"type": "websocket.disconnect", "code": self.close_code, "reason": self.close_reason}
            self.waiter = self.conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        msg = self.incoming.popleft()
        self.conn.update_reading()
        return msg

    async def send(self, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        name = SEND.get((self.phase, kind))  # type: ignore[arg-type]
        if name is None:
            if self.phase in (Phase.CLOSED, Phase.CLOSING) and kind in ("websocket.send", "websocket.close"):
                raise ClientDisconnected("the WebSocket is closed")
            raise AppError(f"unexpected ASGI message {kind!r} in WebSocket phase {self.phase.value}")
        await getattr(self, name)(message)

    async def _accept(self, message: dict[str, Any]) -> None:
        from wsproto.events import AcceptConnection

        try:
            headers = [(k.lower(), v) for k, v in fields.check_all(message.get("headers"))]
        except fields.BadField as exc:
            raise AppError(f"websocket.accept: {exc}") from None
        # wsproto answers permessage-deflate only when the client offered it (RFC 7692 §5).
        extensions: list[Any] = [bounded_deflate(self.max_size)] if self.deflate else []
        accept = AcceptConnection(subprotocol=message.get("subprotocol"), extra_headers=headers, extensions=extensions)
        data = self.ws.send(accept)
        self.phase = Phase.OPEN
        self._say("[accepted]")
        await self._write(data)
        self.opened = True
        _log.info("connection open")
        if self.leftover:
            leftover, self.leftover = self.leftover, b""
            self.feed(leftover)
        if self.eof_pending:
            self.feed(None)
        self.conn.update_reading()
        self._schedule_ping()

    async def _deny(self, message: dict[str, Any]) -> None:
        await self.reject(403)

    async def _deny_start(self, message: dict[str, Any]) -> None:
        from h11 import LocalProtocolError
        from wsproto.events import RejectConnection

        status = message.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            raise AppError(f"websocket.http.response.start: invalid status {status!r}")
        try:
            headers = fields.check_all(message.get("headers"))
        except fields.BadField as exc:
            raise AppError(f"websocket.http.response.start: {exc}") from None
        headers.append((b"connection", b"close"))  # the connection ends with this response
        try:
            data = self.ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        except LocalProtocolError as exc:  # h11 (under wsproto) checks names, values and framing headers
            raise AppError(f"websocket.http.response.start: {exc}") from None
        self.phase = Phase.RESPONDING
        self._say(str(status))
        await self._write(data)

    async def _deny_body(self, message: dict[str, Any]) -> None:
        from h11 import LocalProtocolError
        from wsproto.events import RejectData

        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise AppError(f"websocket.http.response.body: 'body' must be bytes, not {type(body).__name__}")
        more = bool(message.get("more_body", False))
        try:
            data = self.ws.send(RejectData(data=bytes(body), body_finished=not more))
        except LocalProtocolError as exc:  # e.g. more bytes than the app's own Content-Length
            raise AppError(f"websocket.http.response.body: {exc}") from None
        if not more:
            self.phase = Phase.CLOSED
            self.wake()
        await self._write(data)
        if not more:
            self.conn.close_gracefully()

    async def reject(self, status: int) -> None:
        """Refuse the upgrade with an HTTP status (403 when the app closes before accepting, 500 on a crash)."""
        from h11 import LocalProtocolError
        from wsproto.events import RejectConnection

        data = b""
        if self.handshake_ok:
            # LocalProtocolError: wsproto's HTTP side refused an earlier message of the app (a bad denial
            # response) and stays refusing, so the answer is made by hand below.
            with contextlib.suppress(LocalProtocolError):
                data = self.ws.send(RejectConnection(status_code=status, headers=[(b"content-length", b"0")]))
        if not data:
            data = b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % (
                status,
                b"Bad Request" if status == 400 else b"Forbidden" if status == 403 else b"Internal Server Error",
            )
        self.phase = Phase.CLOSED
        self.close_code = 1006
        self._say(str(status))
        await self._write(data)
        self.conn.close_gracefully()

    async def _message(self, message: dict[str, Any]) -> None:
        from wsproto.events import Message

        text, data = message.get("text"), message.get("bytes")
        if text is not None and data is None:
            if not isinstance(text, str):
                raise AppError("websocket.send: 'text' must be a str")
            await self._write(self.ws.send(Message(data=text)))
        elif data is not None and text is None:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise AppError("websocket.send: 'bytes' must be bytes")
            await self._write(self.ws.send(Message(data=bytes(data))))
        else:
            raise AppError("websocket.send needs exactly one of 'bytes' and 'text'")

    async def _close(self, message: dict[str, Any]) -> None:
        code = message.get("code", 1000)
        reason = message.get("reason") or ""
        await self.close(int(code), str(reason))

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame and wait (≤ CLOSE_TIMEOUT) for the peer's; then the TCP connection goes."""
        from wsproto.events import CloseConnection

        if self.phase is not Phase.OPEN:
            return
        self.phase = Phase.CLOSING
        self.close_code = code
        self._cancel_ping()
        await self._write(self.ws.send(CloseConnection(code=code, reason=reason or None)))
        self.conn.deadline = time.monotonic() + CLOSE_TIMEOUT

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        async with self._lock:
            await self.conn.write([data])

    def _write_soon(self, data: bytes) -> None:
        """A frame we owe the peer from a read callback (pong, close reply): written by its own small task."""
        task = self.conn.loop.create_task(self._write_quietly(data))
        self.conn.host.tasks.add(task)
        task.add_done_callback(self.conn.host.tasks.discard)

    async def _write_quietly(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the peer is gone; the read side reports that to the app
            await self._write(data)

    # -- the peer's side ------------------------------------------------------------------------------
    def want_reading(self) -> bool:
        return self.phase is not Phase.CONNECTING and len(self.incoming) < self.max_queue

    def feed(self, data: bytes | None) -> None:
        """Bytes from the peer (None: EOF) → wsproto events → ASGI messages for the app."""
        from wsproto.connection import ConnectionState
        from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
        from wsproto.utilities import RemoteProtocolError

        if self.phase is Phase.CONNECTING:
            if data is None:
                self.eof_pending = True
                self.wake()
            else:
                self.leftover += data  # frames before our 101 are parsed once the app accepts
            return
        if self.ws.state is ConnectionState.CLOSED:
            # Both close frames have passed (or the peer vanished before): nothing the peer sends matters now,
            # and wsproto refuses bytes after its CLOSED state.
            if data is None:
                self.lost()
            return
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    self._size += len(event.data)
                    self._frames += 1
                    if self._size > self.max_size:
                        self._fail(1009, f"message over {self.max_size} bytes")
                        return
                    if self._frames > self.max_frames:
                        self._fail(1009, f"message in over {self.max_frames} frames")
                        return
                    if event.data:
                        self._parts.append(event.data)
                    if event.message_finished:
                        key = "text" if isinstance(event, TextMessage) else "bytes"
                        joined: Any = ("" if key == "text" else b"").join(self._parts)
                        self._parts, self._size, self._frames = [], 0, 0
                        self.incoming.append({"type": "websocket.receive", key: joined})
                        self.wake()
                elif isinstance(event, Ping):
                    self._write_soon(self.ws.send(event.response()))
                elif isinstance(event, Pong):
                    self._pong()
                elif isinstance(event, CloseConnection):
                    if self.ws.state is ConnectionState.OPEN:
                        # Not a frame from the peer: wsproto's verdict on bad input (an extension's 1009, invalid
                        # UTF-8...). The peer is told why with our close frame.
                        self._fail(event.code, event.reason or "")
                    else:
                        self._peer_closed(event.code, event.reason or "")
                    return
        except RemoteProtocolError as exc:
            self._fail(exc.event_hint.code if exc.event_hint is not None else 1002, str(exc))  # type: ignore[attr-defined,unused-ignore]  # wsproto is optional: untyped Any without it
            return
        if data is None:
            self.lost()

    def _peer_closed(self, code: int, reason: str) -> None:
        """The peer's close frame, or its vanishing (EOF: wsproto reports 1006 and is CLOSED, nothing to echo)."""
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        if self.phase is Phase.OPEN:
            if self.ws.state is ConnectionState.REMOTE_CLOSING:  # a real close frame: echo it (RFC 6455 §5.5.1)
                self._write_soon(self.ws.send(CloseConnection(code=code, reason=reason or None)))
            self.close_code, self.close_reason = code, reason
        self._finish()
        self.conn.loop.call_soon(self.conn.close_gracefully)  # after the echo's task had its turn

    def _fail(self, code: int, reason: str) -> None:
        """The peer broke a rule (or a limit): close with ``code``, tell the app, drop the connection soon."""
        from wsproto.events import CloseConnection

        if self.phase is Phase.OPEN:
            self._write_soon(self.ws.send(CloseConnection(code=code, reason=reason[:100])))
        self.close_code, self.close_reason = code, reason[:100]
        self._finish()
        self.conn.deadline = time.monotonic() + CLOSE_TIMEOUT

    def lost(self) -> None:
        """The TCP connection is gone (EOF, reset, closed by us)."""
        if self.phase is not Phase.CLOSED:
            self._finish()

    def _say(self, outcome: str) -> None:
        """uvicorn's line for the handshake's outcome: ``127.0.0.1:51234 - "WebSocket /ws" [accepted]`` (or 403)."""
        if _log.isEnabledFor(logging.INFO):
            _log.info('%s - "WebSocket %s" %s', client_addr(self.scope), full_path(self.scope), outcome)

    def _finish(self) -> None:
        """The app learns of the end once: one websocket.disconnect, however many ways the end is noticed."""
        if self.phase is Phase.CLOSED:
            self._cancel_ping()
            return
        if self.opened:
            self.opened = False
            _log.info("connection closed")
        self.phase = Phase.CLOSED
        self._cancel_ping()
        self.incoming.append({"type": "websocket.disconnect", "code": self.close_code, "reason": self.close_reason})
        self.wake()

    # -- keep-alive pings -----------------------------------------------------------------------------
    def _schedule_ping(self) -> None:
        if self.ping_interval > 0 and self.phase is Phase.OPEN:
            self._ping_timer = self.conn.loop.call_later(self.ping_interval, self._ping)

    def _cancel_ping(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    def _ping(self) -> None:
        from wsproto.events import Ping

        if self.phase is not Phase.OPEN:
            return
        self._pinged_at = time.monotonic()
        self._write_soon(self.ws.send(Ping(payload=b"zcopy")))
        self._ping_timer = self.conn.loop.call_later(self.ping_timeout, self._pong_overdue)

    def _pong(self) -> None:
        if self._pinged_at:
            self._pinged_at = 0.0
            self._cancel_ping()
            self._schedule_ping()

    def _pong_overdue(self) -> None:
        if self.phase is Phase.OPEN and self._pinged_at:
            self._fail(1011, "keepalive ping timeout")
            self.conn.close()
