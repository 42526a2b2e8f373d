"""An ASGI HTTP/1.1 connection on the serve engine: httptools → scope, one app task per request, receive/send.

The socket side (reading, sending, deadlines, the lingering close, TLS, cold chunks off the loop) is
``serve/transport.py``'s, shared with the static server; what is ASGI lives in ``scope.py`` (the scope) and
``cycle.py`` (the response state machine). This file is the glue:

- ``receive()`` streams the request body (Content-Length or chunked, as httptools decodes it). Reading pauses
  while more than ``HIGH_WATER`` body bytes wait for the app, so a big upload to a slow app keeps memory bounded.
  ``Expect: 100-continue`` is answered the first time the app asks for body bytes that have not come yet.
- ``send()`` writes what the cycle returns: bytes by send(2), ``http.response.pathsend`` and
  ``http.response.zerocopysend`` by sendfile(2) through the transport (head with MSG_MORE, the per-call chunk
  cap, EAGAIN → wait for writability, a cold chunk → a disk thread, truncation → close). Under TLS the file
  bytes are read and written: the route is reported as "readwrite", never as zero-copy.
- Disconnects: once the client is gone (EOF, reset, a failed write) ``receive()`` returns ``http.disconnect``
  (after any body bytes already received); ``send()`` raises ``ClientDisconnected`` (an OSError, ASGI 2.4) only
  when its bytes cannot be delivered. A client that half-closes after its request still gets its response if the
  app writes within ``DISCONNECT_GRACE`` of the FIN and of each write after it; otherwise the connection closes
  (the descriptor is released; the app task is left to return, as under uvicorn).
- Pipelined requests are answered in order: one app task at a time per connection; reading pauses while a parsed
  request waits behind the one in the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import time
from collections import deque
from typing import Any, Protocol

from zcopy.errors import TruncatedFileError
from zcopy.parts import Part
from zcopy.serve import logs
from zcopy.serve.asgi import scope as scopes
from zcopy.serve.asgi import websocket
from zcopy.serve.asgi.cycle import AppError, ResponseCycle, error_response
from zcopy.serve.asgi.errors import ClientDisconnected
from zcopy.serve.config import AppConfig, Host
from zcopy.serve.h1 import INF, UPGRADE, H1Reader, TooLarge
from zcopy.serve.transport import RawTransport, TLSTransport, Transport

# Request body bytes buffered for the app before reading pauses: uvicorn's 64 KiB high-water mark. One recv can
# overshoot it, so memory per connection is bounded by HIGH_WATER + RECV_SIZE.
HIGH_WATER = 1 << 16
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# After the client's FIN (it gave up, or half-closed to wait for its answer), the longest the app may go without
# writing before the connection is closed and its descriptor released; the app already got http.disconnect.
DISCONNECT_GRACE = 2.0


class AsgiHost(Host, Protocol):
    """What an ASGI connection needs beyond config.Host: the app's settings, lifespan state, a request count."""

    app_config: AppConfig | None  # never None for a server that makes these connections
    trusted: scopes.Trusted
    state: dict[str, Any] | None
    in_app: int
    tasks: set[asyncio.Task[None]]


class Exchange:
    """One request/response pair: the body queue the app receives from, and the response cycle it sends to."""

    __slots__ = (
        "body",
        "body_size",
        "complete",
        "conn",
        "continue_sent",
        "delivered_end",
        "disconnected",
        "expect_100",
        "http10",
        "method",
        "refused",
        "response",
        "route",
        "scope",
        "target",
        "waiter",
    )

    def __init__(self, conn: Connection, scope: dict[str, Any], method: bytes, target: bytes, http10: bool,
                 keep_alive: bool, expect_100: bool) -> None:  # fmt: skip
        self.conn = conn
        self.scope = scope
        self.method = method
        self.target = target
        self.http10 = http10
        self.response = ResponseCycle(
            head_only=method == b"HEAD", http10=http10, keep_alive=keep_alive, defaults=conn.head_defaults
        )
        self.body: list[bytes] = []
        self.body_size = 0
        self.complete = False  # the whole request body has been parsed
        self.delivered_end = False  # the app has been told more_body=False
        self.disconnected = False
        self.refused = False  # its body broke the framing and the server answered 400 in the app's place
        self.expect_100 = expect_100
        self.continue_sent = False
        self.waiter: asyncio.Future[None] | None = None
        self.route = "memory"

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        while True:
            if self.body:
                body = self.body
                data = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
                self.body_size = 0
                conn.update_reading()
                if self.complete:
                    self.delivered_end = True
                return {"type": "http.request", "body": data, "more_body": not self.complete}
            if self.complete and not self.delivered_end:
                self.delivered_end = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.disconnected or self.response.done or conn.closed:
                return {"type": "http.disconnect"}
            if self.expect_100 and not self.continue_sent and not self.response.started:
                self.continue_sent = True  # RFC 9110 §10.1.1: the app wants the body, so ask the client for it
                await conn.write([CONTINUE])
                continue
            self.waiter = conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    async def send(self, message: Any) -> None:
        conn = self.conn
        resp = self.response
        if conn.closed or self.refused:
            raise ClientDisconnected("the client has disconnected")
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "http.response.body" and resp.started and not resp.done:
            parts = resp.body(message)  # the common message, straight to the cycle (same rules as resp.send)
            if len(parts) == 1 and type(parts[0]) is bytes:
                # Most responses are one small buffer (head and body joined): one send, no coroutine, no Outbox.
                data = parts[0]
                n = conn.write_now(data)
                if n < len(data):
                    await conn.write([data[n:]])
            elif parts:
                await conn.write(parts)
        elif kind == "http.response.pathsend" or kind == "http.response.zerocopysend":
            resp.check_file(kind)
            await (self._pathsend(message) if kind == "http.response.pathsend" else self._zerocopysend(message))
        else:
            if kind == "http.response.start" and not resp.started and (not self.complete or conn.host.closing):
                resp.keep_alive = False  # the rest of the body may never be read (or we are shutting down): close
            parts = resp.send(message)
            if parts:
                await conn.write(parts)
        if resp.done:
            self.wake()  # a receive() waiting for disconnect gets it now that the response is complete

    async def _pathsend(self, message: dict[str, Any]) -> None:
        path = message.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise AppError(f"http.response.pathsend: 'path' must be an absolute path, not {path!r}")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise AppError(f"http.response.pathsend: cannot open {path}: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise AppError(f"http.response.pathsend: not a regular file: {path}")
            parts = self.response.file(fd, 0, st.st_size, False, path, cap=True)
            if parts:
                await self.conn.write(parts, self)
        finally:
            os.close(fd)

    async def _zerocopysend(self, message: dict[str, Any]) -> None:
        f = message.get("file")
        try:
            fd = f if isinstance(f, int) else f.fileno()  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError) as exc:
            raise AppError(f"http.response.zerocopysend: 'file' has no OS file descriptor: {f!r}") from exc
        offset = message.get("offset")
        count = message.get("count")
        from_position = offset is None
        if from_position:
            offset = os.lseek(fd, 0, os.SEEK_CUR)  # the spec: "read from the current position of file"
        if not isinstance(offset, int) or offset < 0:
            raise AppError(f"http.response.zerocopysend: bad offset {offset!r}")
        if count is None:
            count = max(0, os.fstat(fd).st_size - offset)
        if not isinstance(count, int) or count < 0:
            raise AppError(f"http.response.zerocopysend: bad count {count!r}")
        more = bool(message.get("more_body", False))
        parts = self.response.file(fd, offset, count, more, getattr(f, "name", f"fd:{fd}"))
        if parts:
            await self.conn.write(parts, self)
        if from_position:
            os.lseek(fd, offset + count, os.SEEK_SET)  # like a read of those bytes would have left it


class Connection(H1Reader, Transport):
    """The exchange queue and the app tasks (head rules: h1.H1Reader; the socket side: transport.py)."""

    host: AsgiHost

    def __init__(self, host: AsgiHost, client: scopes.Addr, server: scopes.Addr, scheme: str) -> None:
        H1Reader.__init__(self, host.limits)
        self.host = host
        self.route: str | None = None
        self._wfut: asyncio.Future[None] | None = None  # write() waiting for the transport's send
        self._werr: BaseException | None = None
        self.loop = host.loop
        config = host.app_config
        assert config is not None
        self.config = config
        self.head_defaults = config.head
        self.app = config.app
        self.client = client
        self.server_addr = server
        self.scheme = scheme
        self.peer = _peer(client)
        self.exchanges: deque[Exchange] = deque()
        self.parsing: Exchange | None = None
        self.closed = False
        self.eof = False
        self.lingering = False
        self.stopped = 0  # a malformed request: its status (400/414/431); nothing after it is parsed
        self.task: asyncio.Task[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect = False
        self._upgrade = False
        self.ws: websocket.WebSocket | None = None
        self._ws_leftover: bytes | None = None
        self._ws_head: tuple[bytes, str, list[tuple[bytes, bytes]]] | None = None

    # -- httptools callbacks (the head's own: h1.H1Reader) ---------------------------------------------
    def begin(self) -> None:
        self._headers = []
        self._expect = False
        self._upgrade = False

    def header(self, name: bytes, value: bytes) -> None:
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect = True
        elif name == b"upgrade":
            self._upgrade = True
        self._headers.append((name, value))

    def head_complete(self) -> None:
        p = self.parser
        version: str = p.get_http_version()
        http10 = version == "1.0"
        if not self.host_ok(http10):
            self.error = 400
            raise TooLarge
        method: bytes = p.get_method()
        target = self.target()
        headers = self._headers
        # Both must agree, or the request would wait for a switch httptools never makes (no answer, responses
        # out of step): httptools' own upgrade flag and our reading of the Connection tokens.
        if self._upgrade and method == b"GET" and p.should_upgrade() and websocket.is_upgrade(headers):
            if self.config.ws != "none" and websocket.available():
                self._ws_head = (target, version, headers)  # taken over when httptools stops at the upgrade
                return  # the head's deadline holds until then (a body announced before the switch must come)
            _warn_no_websockets(self.host)
        client, scheme = self.client, self.scheme
        if self.config.proxy_headers:
            client, scheme = scopes.forwarded(headers, client, scheme, self.host.trusted)
        try:
            scope = scopes.http_scope(
                method, target, version, headers, client, self.server_addr, scheme, self.config.root_path,
                self.host.state, self.extensions(),
            )  # fmt: skip
        except scopes.BadTarget:
            self.error = 400
            raise TooLarge from None
        keep_alive = self.keep_alive(http10) and not self.host.closing
        ex = Exchange(self, scope, method, target, http10, keep_alive, self._expect)
        self.parsing = ex
        exchanges = self.exchanges
        exchanges.append(ex)
        # Until the body is complete, each piece of it must come within body_timeout of the last (on_body); then
        # the app may take as long as it likes (on_message_complete); writes have their own deadline.
        self.deadline = time.monotonic() + self.limits.body_timeout
        if len(exchanges) == 1:
            task = self.task = self.loop.create_task(self.run_app(ex))
            self.host.tasks.add(task)  # the server cancels what is still running when its shutdown grace runs out

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is not None:
            ex.body.append(body)
            ex.body_size += len(body)
            ex.wake()
            self.deadline = time.monotonic() + self.limits.body_timeout

    def on_message_complete(self) -> None:
        self.in_request = False
        ex = self.parsing
        if ex is not None:
            ex.complete = True
            self.parsing = None
            ex.wake()
            if not self.eof:
                self.deadline = INF

    # -- input ----------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.stopped:
            return
        status = self.parse(data)
        if status == 0:
            if len(self.exchanges) < 2 and self.parsing is None and not self.stopped:
                return  # the common case: nothing that could stop reading happened (see want_reading)
        elif status == UPGRADE:
            if self._ws_head is not None:
                self.start_websocket(data[self.upgrade_at :])
                return
            self.stopped = -1  # an upgrade we do not speak: answer what came as HTTP, then close
        else:
            self._malformed(status)
        self.update_reading()
        if self.stopped and not self.exchanges:
            self.answer_stopped()

    def _malformed(self, status: int) -> None:
        self.stopped = status
        ex = self.parsing
        if ex is None:
            return
        self.parsing = None
        if ex not in self.exchanges:
            self.stopped = -1  # the app answered without reading the body, and the connection closes after it
            return
        if ex is not self.exchanges[0]:
            self.exchanges.remove(ex)  # queued behind another request, never started: answered in order (400)
            return
        # Broken inside a body the app is reading (a bad chunk size, a missing CRLF): the framing error is the
        # client's. Unless the app has begun its answer, a 400 goes in its place (as uvicorn does) and the app
        # sees a disconnect; either way the connection closes after.
        ex.disconnected = True
        ex.wake()
        self.stopped = -1
        resp = ex.response
        if not resp.head_sent and not self.closed:
            ex.refused = True
            self.write_nowait(error_response(status, keep_alive=False, http10=ex.http10, head_only=False))
            resp.abandon()
            resp.status = status
            if self.host.log_level <= logs.BAD_REQUEST:
                msg = f"{self.peer}: malformed request body ({status}); closing the connection"
                self.host.log(logs.BAD_REQUEST, msg)
            self.close_gracefully()

    def answer_stopped(self) -> None:
        """All answers before a malformed request are out: answer it (400/414/431) and close."""
        status = self.stopped
        if status > 0:
            self.stopped = -1
            self.write_nowait(error_response(status, keep_alive=False, http10=False, head_only=False))
            if self.host.log_level <= logs.BAD_REQUEST:  # a scanner sends many: format only what is written
                self.host.log(logs.BAD_REQUEST, f"{self.peer}: malformed request ({status}); closing the connection")
        self.close_gracefully()

    def extensions(self) -> dict[str, Any]:
        """A fresh dict per request (an app may write into its scope)."""
        return {"http.response.pathsend": {}, "http.response.zerocopysend": {}}

    def want_reading(self) -> bool:
        if self.ws is not None:
            return not self.closed and not self.eof and self.ws.want_reading()
        if self.closed or self.eof or self.stopped:
            return False
        if len(self.exchanges) > 1:
            return False  # a pipelined request waits for its turn: read no further ahead
        ex = self.parsing
        return ex is None or ex.body_size < HIGH_WATER

    def on_eof(self) -> None:
        self.eof = True
        self.update_reading()
        if self.ws is not None:
            self.ws.feed(None)
            return
        for ex in self.exchanges:
            ex.disconnected = True
            ex.wake()
        if not self.exchanges:
            self.close()
        else:
            # The client has given up, or half-closed and waits: the app, told http.disconnect, has
            # DISCONNECT_GRACE to make progress (each write renews it) before the connection is closed anyway.
            self.deadline = time.monotonic() + DISCONNECT_GRACE

    def written(self) -> None:
        """A write completed: no deadline while the app works on, unless the client has sent its FIN."""
        if self.eof:
            self.deadline = time.monotonic() + DISCONNECT_GRACE
        elif self.parsing is not None and not self.in_head:
            self.deadline = time.monotonic() + self.limits.body_timeout  # the body is still coming
        elif self.deadline != INF and not self.in_request:
            self.deadline = INF

    # -- WebSockets -----------------------------------------------------------------------------------
    def start_websocket(self, leftover: bytes) -> None:
        """httptools stopped at the upgrade: hand the parsed head and the bytes after it to a WebSocket."""
        if self.exchanges:
            self._ws_leftover = leftover  # HTTP answers pipelined before the upgrade go first (finished())
            self.update_reading()
            return
        assert self._ws_head is not None
        target, version, headers = self._ws_head
        self._ws_head = None
        client, scheme = self.client, "wss" if self.scheme == "https" else "ws"
        if self.config.proxy_headers:
            client, scheme = scopes.forwarded(headers, client, scheme, self.host.trusted)
        protocols = [
            p.strip()
            for name, value in headers
            if name == b"sec-websocket-protocol"
            for p in value.decode("latin-1").split(",")
            if p.strip()
        ]
        try:
            scope = scopes.websocket_scope(
                target=target,
                http_version=version,
                headers=headers,
                client=client,
                server=self.server_addr,
                scheme=scheme,
                root_path=self.config.root_path,
                state=self.host.state,
                subprotocols=protocols,
                extensions={"websocket.http.response": {}},
            )
        except scopes.BadTarget:
            self._malformed(400)
            self.answer_stopped()
            return
        ws = self.ws = websocket.WebSocket(self, scope, headers, target, leftover)
        self.deadline = INF
        task = self.task = self.loop.create_task(self.run_websocket(ws))
        self.host.tasks.add(task)
        self.update_reading()

    async def run_websocket(self, ws: websocket.WebSocket) -> None:
        host = self.host
        try:
            if not ws.handshake_ok:
                await ws.reject(400)
                return
            host.in_app += 1
            receive: logs.Receive = ws.receive
            send: logs.Send = ws.send
            if host.log_level <= logs.ASGI_MESSAGE:
                receive, send = logs.traced(receive, send, self._trace, f"{self.peer} {_ws_where(ws)}")
            try:
                await self.app(ws.scope, receive, send)
            finally:
                host.in_app -= 1
        except ClientDisconnected:
            if host.log_level <= logs.DISCONNECT:
                host.log(logs.DISCONNECT, f"{self.peer}: client disconnected ({_ws_where(ws)})")
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            host.log_exception(logs.APP_ERROR, f"{self.peer}: exception in ASGI application ({_ws_where(ws)})")
            if ws.phase is websocket.Phase.CONNECTING:
                await _quietly(ws.reject(500))
            else:
                await _quietly(ws.close(1011))  # RFC 6455 §7.4.1: internal error
        else:
            if ws.phase is websocket.Phase.CONNECTING:
                if not ws.eof_pending:  # (a peer that left before the answer got websocket.disconnect)
                    host.log(logs.APP_ERROR, f"{self.peer}: ASGI application returned without accepting the WebSocket")
                await _quietly(ws.reject(403))
            elif ws.phase is websocket.Phase.RESPONDING:
                host.log(logs.APP_ERROR, f"{self.peer}: ASGI application returned mid-way through its denial response")
            else:
                await _quietly(ws.close(1000))
        finally:
            if self.task is not None:
                host.tasks.discard(self.task)
                self.task = None
            if ws.phase in (websocket.Phase.CLOSED, websocket.Phase.RESPONDING) and not self.closed:
                self.close_gracefully()

    # -- the app --------------------------------------------------------------------------------------
    def start_app(self, ex: Exchange) -> None:
        task = self.task = self.loop.create_task(self.run_app(ex))
        self.host.tasks.add(task)  # the server cancels what is still running when its shutdown grace runs out

    async def run_app(self, ex: Exchange) -> None:
        host = self.host
        limit = self.config.limit_concurrency
        resp = ex.response
        if limit is not None and host.in_app >= limit:
            if host.log_level <= logs.OVERLOADED:
                msg = f"503: {limit} request(s) already in the app (--limit-concurrency)"
                host.log_throttled("limit-concurrency", msg, logs.OVERLOADED)
            await self._error_reply(ex, 503)  # over --limit-concurrency: the app is never called
            self.finished(ex)
            return
        host.in_app += 1
        receive: logs.Receive = ex.receive
        send: logs.Send = ex.send
        if host.log_level <= logs.ASGI_MESSAGE:  # one int compare per request when not tracing
            receive, send = logs.traced(receive, send, self._trace, f"{self.peer} {_where(ex)}")
        try:
            await self.app(ex.scope, receive, send)
        except ClientDisconnected:
            resp.abandon()  # the app let our disconnect propagate: nothing to report (but at debug)
            self._gone(ex)
        except asyncio.CancelledError:
            resp.abandon()  # shutdown past its grace period
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if ex.refused or _from_disconnect(exc):
                # Our ClientDisconnected turned into the framework's own exception (Starlette's ClientDisconnect
                # is raised from it): a client that went away is not an application error worth a traceback.
                resp.abandon()
                self._gone(ex)
            else:
                host.log_exception(logs.APP_ERROR, f"{self.peer}: exception in ASGI application ({_where(ex)})")
                if not resp.head_sent and not self.closed:
                    await self._error_reply(ex, 500)  # nothing of the response is on the wire yet: replace it
                elif not resp.done:
                    resp.abandon()  # a response cut short: its framing is broken, the connection must close
                # else: complete on the wire (Starlette sends its 500, then re-raises): the connection stays
        else:
            if not resp.done:
                if not resp.head_sent and not self.closed:
                    host.log(logs.APP_ERROR, f"{self.peer}: ASGI application returned without completing a response")
                    await self._error_reply(ex, 500)
                elif not self.closed:
                    msg = f"{self.peer}: ASGI application returned before completing its response; closing"
                    host.log(logs.APP_ERROR, msg)
                    resp.abandon()
        finally:
            host.in_app -= 1
        self.finished(ex)

    def _trace(self, message: str) -> None:
        self.host.log(logs.ASGI_MESSAGE, message)

    def _gone(self, ex: Exchange) -> None:
        if self.host.log_level <= logs.DISCONNECT:
            msg = f"{self.peer}: client disconnected before the response was complete ({_where(ex)})"
            self.host.log(logs.DISCONNECT, msg)

    async def _error_reply(self, ex: Exchange, status: int) -> None:
        resp = ex.response
        keep = resp.keep_alive and ex.complete and not self.host.closing
        try:
            data = error_response(status, keep_alive=keep, http10=ex.http10, head_only=ex.method == b"HEAD")
            await self.write([data])
        except ClientDisconnected:
            keep = False
        resp.abandon(keep_alive=keep)
        resp.status = status

    def finished(self, ex: Exchange) -> None:
        """The app is done with ``ex``: log it, then start the next pipelined request or close or wait."""
        resp = ex.response
        if self.exchanges and self.exchanges[0] is ex:
            self.exchanges.popleft()
        if self.task is not None:
            self.host.tasks.discard(self.task)  # run_app always ends here, so no done-callback is needed
            self.task = None
        log = self.host.access_log
        if log is not None:
            version = b"1.0" if ex.http10 else b"1.1"
            log.write(self.peer, ex.method, ex.target, version, resp.status, resp.sent, ex.route, ex.scope)
        if self.closed:
            return
        if resp.short:
            msg = f"{self.peer}: response shorter than its Content-Length; closing the connection"
            self.host.log(logs.SHORT_RESPONSE, msg)
        if not resp.keep_alive or not ex.complete or self.host.closing:
            self.close_gracefully()
            return
        if self.exchanges:
            self.start_app(self.exchanges[0])
            return
        if self._ws_head is not None and self._ws_leftover is not None:
            leftover, self._ws_leftover = self._ws_leftover, None
            self.start_websocket(leftover)
            return
        if self.stopped:
            self.answer_stopped()
            return
        if self.eof:
            self.close()
            return
        if not self.in_request:
            self.deadline = time.monotonic() + self.limits.keepalive_timeout
        if not self._reading:
            self.update_reading()

    def on_deadline(self) -> None:
        if self.parsing is not None and not self.in_head and not self.eof and not self.closed:
            if not self._reading:
                # We paused reading (the app has not taken what came, or a request waits its turn): the client
                # is not late; the body deadline starts again when reading does.
                self.deadline = time.monotonic() + self.limits.body_timeout
                return
            if self.host.log_level <= logs.BAD_REQUEST:
                msg = f"{self.peer}: no request body bytes for {self.limits.body_timeout:g} s; closing the connection"
                self.host.log(logs.BAD_REQUEST, msg)
        self.close()

    @property
    def idle(self) -> bool:
        return not self.in_request and not self.exchanges

    # -- the transport's hooks (serve/transport.py does the socket side) ------------------------------
    def update_reading(self) -> None:
        self.set_reading(self.want_reading() or (self.lingering and not self.eof and not self.closed))

    def on_data(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws.feed(data)
            return
        self.feed(data)

    async def write(self, parts: list[Part], ex: Exchange | None = None) -> None:
        """Send ``parts`` (raises ClientDisconnected when they cannot be delivered); a file that turned out shorter
        than its slice cuts the response and closes the connection (logged), without raising."""
        if self.closed:
            raise ClientDisconnected("the client has disconnected")
        if not self.send(parts, whole=False):
            fut = self._wfut = self.loop.create_future()
            try:
                await fut
            finally:
                self._wfut = None
        if ex is not None and self.route is not None:
            ex.route = self.route
        exc, self._werr = self._werr, None
        if isinstance(exc, TruncatedFileError):
            # The head promised more than the file now has: the client got a short body; this connection is over.
            self.host.log(logs.SHORT_RESPONSE, f"{self.peer}: {exc}; closing the connection")
            if ex is not None:
                ex.response.abandon()
            self.abort()
            return
        if exc is not None:
            self.abort()
            if isinstance(exc, ClientDisconnected):
                raise exc
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ClientDisconnected(f"the client has disconnected ({reason})") from exc
        if self.closed and (ex is None or not ex.response.done):
            raise ClientDisconnected("the client has disconnected")
        self.written()

    def _wake_writer(self) -> None:
        fut = self._wfut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def send_done(self) -> None:
        self._wake_writer()

    def send_failed(self, exc: BaseException) -> None:
        self._werr = exc
        self._wake_writer()

    def on_closed(self) -> None:
        """Every exchange learns of the disconnect; queued ones never start; a waiting write() wakes."""
        self._wake_writer()
        if self.ws is not None:
            self.ws.lost()
        for ex in self.exchanges:
            ex.disconnected = True
            ex.wake()
        self.host.forget(self)


def _from_disconnect(exc: BaseException) -> bool:
    """Was ``exc`` raised while handling (or from) our ClientDisconnected?"""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        if isinstance(cur, ClientDisconnected):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


_warned: set[int] = set()


def _warn_no_websockets(host: AsgiHost) -> None:
    if id(host) not in _warned:
        _warned.add(id(host))
        host.log(logs.DEGRADED, "WebSocket upgrade answered as plain HTTP: install wsproto (pip install 'zcopy[asgi]')")


async def _quietly(aw: Any) -> None:
    """Best effort (a reject or close frame to a peer that may be gone)."""
    with contextlib.suppress(OSError):
        await aw


def _peer(client: scopes.Addr) -> str:
    """The client as error lines name it: ``host:port`` (uvicorn's form), "-" on a unix socket."""
    return f"{client[0]}:{client[1]}" if client else "-"


def _show(target: bytes) -> str:
    return target.decode("latin-1").encode("unicode_escape").decode("ascii")[:200]


def _where(ex: Exchange) -> str:
    """The request as log lines name it: method and (escaped, cut) target."""
    return f"{ex.method.decode()} {_show(ex.target)}"


def _ws_where(ws: websocket.WebSocket) -> str:
    return f"WebSocket {_show(ws.scope['raw_path'])}"


class RawConnection(Connection, RawTransport):
    """A plain TCP (or unix) socket: add_reader for input, aio.Outbox (send + sendfile) for output (transport.py)."""

    def __init__(self, host: AsgiHost, sock: socket.socket, client: scopes.Addr) -> None:
        try:
            name: Any = sock.getsockname()
            server: Any = (str(name[0]), int(name[1])) if isinstance(name, tuple) else (str(name), None)
        except OSError:
            server = None
        Connection.__init__(self, host, client, server, "http")
        self._raw_init(sock)


class TLSConnection(Connection, TLSTransport):
    """A TLS connection over an asyncio SSL transport; file bodies are read and written (route "readwrite")."""

    def __init__(self, host: AsgiHost) -> None:
        Connection.__init__(self, host, None, None, "https")
        self._tls_init()

    def extensions(self) -> dict[str, Any]:
        # pathsend works here (by copying, honestly reported); zerocopysend promises sendfile, which TLS cannot do.
        return {"http.response.pathsend": {}}

    def on_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.server_addr = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        self.peer = _peer(self.client)
        self.host.adopt(self)
