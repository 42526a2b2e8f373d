"""One static-file connection: in-order answers to pipelined requests (head rules: h1.py; socket side: transport.py).

``Session`` is the protocol: the request queue, the handler's answers, keep-alive and the access log. The socket
side is the transport's (``RawTransport``: add_reader and sendfile straight from the read callback, a task only
for a chunk that waits for the disk; ``TLSTransport``: the copy route, reported as "readwrite").
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import deque
from typing import Any, Protocol

from zcopy.errors import TruncatedFileError
from zcopy.serve import logs
from zcopy.serve.config import Host
from zcopy.serve.errnos import EXHAUSTED
from zcopy.serve.h1 import UPGRADE, H1Reader, TooLarge
from zcopy.serve.handler import Handler, Request, Response
from zcopy.serve.transport import RawTransport, TLSTransport, Transport

# Pipelined requests parsed but not yet answered; beyond this we stop reading until the queue drains.
MAX_PIPELINE = 32

# Request bodies are read and dropped (a file server takes none); past this much the request is answered 413
# and the connection closed, so nobody can keep us reading for free (nginx client_max_body_size is 1m too).
MAX_BODY = 1 << 20

# A static file of at most TRUST_SIZE bytes that was in the page cache is trusted to stay there for
# TRUST_SECONDS: its responses skip the residency probe (transport.resident) meanwhile.
TRUST_SIZE = 64 << 10
TRUST_SECONDS = 1.0

# A 503 for lack of descriptors says "try again in a second": by then a keep-alive or a response has ended.
RETRY_AFTER = b"1"

_INTERESTING = frozenset(
    (
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"accept-encoding",
    )
)


class StaticHost(Host, Protocol):
    """A server that answers with the static file handler (config.Host plus the handler)."""

    handler: Handler


class Session(H1Reader, Transport):
    """The request queue and the answers, shared by the raw and the TLS connection (head rules: h1.H1Reader; the
    socket side: transport.py)."""

    def __init__(self, server: StaticHost, peer: str) -> None:
        H1Reader.__init__(self, server.limits)
        self.server = server
        self.host = server
        self.route: str | None = None
        self.loop = server.loop
        self.peer = peer
        self.pending: deque[Request] = deque()
        self.closed = False
        self.reading_stopped = False  # a 400/431 or an upgrade: nothing after it is parsed
        self.eof = False
        self.busy = False  # a response is being written by a task
        self.current: Response | None = None
        self.current_req: Request | None = None
        self.lingering = False
        self._headers: dict[bytes, bytes] = {}

    # -- httptools callbacks (the head's own: h1.H1Reader) ---------------------------------------------
    def begin(self) -> None:
        self._headers = {}

    def header(self, name: bytes, value: bytes) -> None:
        if name in _INTERESTING:
            old = self._headers.get(name)
            self._headers[name] = value if old is None else old + b", " + value

    def on_body(self, body: bytes) -> None:
        self.head_bytes += len(body)
        if self.head_bytes > MAX_BODY:
            self.error = 413
            raise TooLarge

    def on_message_complete(self) -> None:
        self.in_request = False
        p = self.parser
        method: bytes = p.get_method()
        version: str = p.get_http_version()
        http10 = version == "1.0"
        if not self.host_ok(http10):
            self.error = 400
            raise TooLarge
        self.pending.append(Request(method, self.target(), http10, self.keep_alive(http10), self._headers))

    # -- input ----------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.reading_stopped:
            return
        status = self.parse(data)
        if status == UPGRADE:
            self.reading_stopped = True  # we speak no other protocol: answer what came, then close
            self._close_after_pending()
        elif status:
            self.reading_stopped = True
            self.pending.append(Request(b"", b"", False, False, {b"!error": b"%d" % status}))
        self.process()

    def _close_after_pending(self) -> None:
        if self.pending:
            self.pending[-1].keep_alive = False
        elif not self.busy:
            self.close()

    def respond(self, req: Request) -> Response:
        err = req.headers.get(b"!error")
        handler = self.server.handler
        if err is not None:
            return handler.error(int(err), None, close=True)
        if self.server.closing or (self.reading_stopped and not self.pending):
            req.keep_alive = False
        try:
            return handler.handle(req)
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                self.server.log_exception(logs.APP_ERROR, "handler failed")
                return handler.error(500, req)
            # Out of descriptors: the server is overloaded, the file may well exist (never a 404). The
            # connection stays open: closing it would free one fd, but the client would just reconnect.
            if self.server.log_level <= logs.REPEATED:  # every request of an overload: format only if written
                target = req.target.decode("latin-1").encode("unicode_escape").decode("ascii")
                self.server.log_throttled(
                    "open: exhausted",
                    f"503 for {target}: cannot open a file ({exc.errno}: {os.strerror(exc.errno or 0)})",
                )
            return handler.error(503, req, extra=[(b"Retry-After", RETRY_AFTER)])
        except Exception:  # a bug must cost one response, never the connection or the server
            self.server.log_exception(logs.APP_ERROR, "handler failed")
            # Nothing of this response was written yet, so the connection is still in step: keep it.
            return handler.error(500, req)

    def process(self) -> None:
        """Answer queued requests in order until one cannot be finished without waiting."""
        while self.pending and not self.busy and not self.closed and not self.lingering:
            req = self.pending.popleft()
            resp = self.respond(req)
            self.current = resp
            self.current_req = req
            if not self.start(resp):
                self.busy = True
                self.pause_reading()
                return
            self.finish(req, resp)
        if self.closed or self.busy or self.lingering:
            return
        if (self.eof or self.server.closing) and not self.in_request:
            self.close()  # graceful shutdown: this connection's in-flight work is done
            return
        if len(self.pending) < MAX_PIPELINE:
            self.resume_reading()
        if not self.in_request:
            self.deadline = time.monotonic() + self.limits.keepalive_timeout

    def finish(self, req: Request, resp: Response) -> None:
        self.release_current()  # a no-op if close() already released it (error paths)
        server = self.server
        if server.access_log is not None:
            server.access_log.write(
                self.peer,
                req.method,
                req.target,
                b"1.0" if req.http10 else b"1.1",
                resp.status,
                resp.body_bytes,
                resp.route,
            )
        if not resp.keep_alive:
            self.close_gracefully()

    # -- the transport's hooks (serve/transport.py does the socket side) ------------------------------
    def start(self, resp: Response) -> bool:
        """Send ``resp``; False when it goes on in the background (send_done or send_failed follow)."""
        entry = resp.entry
        if entry is None or entry.size > TRUST_SIZE:
            done = self.send(resp.parts)
        else:
            # A small file found in the page cache less than TRUST_SECONDS ago is sent without asking again (the
            # probe is a syscall per response); a wrong guess costs one small read on the loop, never bytes.
            now = time.monotonic()
            trusted = entry.resident_until > now
            done = self.send(resp.parts, probe=not trusted)
            if done and not trusted and not self.closed:
                entry.resident_until = now + TRUST_SECONDS
        if done and self.route is not None:
            resp.route = self.route  # the route the transport used for the body
        return done

    def send_done(self) -> None:
        resp, req = self.current, self.current_req
        assert resp is not None and req is not None
        if self.route is not None:
            resp.route = self.route
        self.busy = False
        self.finish(req, resp)
        self.process()

    def send_failed(self, exc: BaseException) -> None:
        if isinstance(exc, TruncatedFileError):
            # The head promised more bytes than the file now has: this connection cannot be reused.
            self.server.log(logs.SHORT_RESPONSE, f"{self.peer}: {exc}; closing the connection")
        elif isinstance(exc, OSError) and self.server.log_level <= logs.DISCONNECT:
            msg = f"{self.peer}: client disconnected mid-response ({exc.strerror or exc})"
            self.server.log(logs.DISCONNECT, msg)
        self.abort()

    def on_data(self, data: bytes) -> None:
        self.feed(data)

    def on_eof(self) -> None:
        self.pause_reading()
        if self.idle:
            self.close()
        else:
            self._close_after_pending()

    def on_linger(self) -> None:
        self.pending.clear()

    def on_closed(self) -> None:
        self.release_current()
        self.server.forget(self)

    def pause_reading(self) -> None:
        self.set_reading(False)

    def resume_reading(self) -> None:
        if not self.eof:
            self.set_reading(True)

    def release_current(self) -> None:
        if self.current is not None and self.current.entry is not None:
            self.current.entry.release()
        self.current = None

    def on_deadline(self) -> None:
        """The sweeper found our deadline passed: slow head (slowloris), idle keep-alive, or linger over."""
        self.close()

    @property
    def idle(self) -> bool:
        return not self.in_request and not self.busy and not self.pending


class RawConnection(Session, RawTransport):
    """A plain TCP connection: add_reader, and aio.Outbox (send + sendfile) from the callbacks (transport.py)."""

    def __init__(self, server: StaticHost, sock: socket.socket, peer: str) -> None:
        Session.__init__(self, server, peer)
        self._raw_init(sock)


class TLSConnection(Session, TLSTransport):
    """A TLS connection over an asyncio SSL transport; file bodies by read + write (a copy, honestly named)."""

    def __init__(self, server: StaticHost) -> None:
        Session.__init__(self, server, "-")
        self._tls_init()

    def on_made(self, transport: asyncio.BaseTransport) -> None:
        peer: Any = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "-"
        self.server.adopt(self)
