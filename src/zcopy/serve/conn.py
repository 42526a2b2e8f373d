"""One static-file connection: in-order answers to pipelined requests, deadlines, writes (head rules: h1.py).

RawConnection (the fast path) owns a plain non-blocking socket: reads via loop.add_reader, answers by
aio.Outbox (send + sendfile) straight from the read callback and only spawns a task when the socket is full.
TLSConnection is an asyncio Protocol over an SSL transport: sendfile cannot encrypt, so file bytes are
pread into memory and written (route "readwrite", reported as such).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import deque
from typing import Any, Protocol

from zcopy.aio import Outbox
from zcopy.errors import TruncatedFileError
from zcopy.parts import FileSlice
from zcopy.serve import logs
from zcopy.serve.config import Host
from zcopy.serve.errnos import EXHAUSTED
from zcopy.serve.h1 import INF, LINGER_SECONDS, RECV_SIZE, UPGRADE, H1Reader, TooLarge
from zcopy.serve.handler import Handler, Request, Response
from zcopy.serve.transport import TlsCopy, resident, send_cold

# Pipelined requests parsed but not yet answered; beyond this we stop reading until the queue drains.
MAX_PIPELINE = 32

# Request bodies are read and dropped (a file server takes none); past this much the request is answered 413
# and the connection closed, so nobody can keep us reading for free (nginx client_max_body_size is 1m too).
MAX_BODY = 1 << 20

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


class Session(H1Reader):
    """The request queue and the answers, shared by the raw and the TLS connection (head rules: h1.H1Reader)."""

    def __init__(self, server: StaticHost, peer: str) -> None:
        super().__init__(server.limits)
        self.server = server
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
        self.pending.append(Request(method, self.target(), http10, bool(p.should_keep_alive()), self._headers))

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

    # -- to be provided by the transport flavour ------------------------------------------------------
    def start(self, resp: Response) -> bool:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def close_gracefully(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

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


class RawConnection(Session):
    """A plain TCP connection driven by add_reader and aio.Outbox (sendfile)."""

    def __init__(self, server: StaticHost, sock: socket.socket, peer: str) -> None:
        super().__init__(server, peer)
        self.sock = sock
        self.fd = sock.fileno()
        self._reading = True
        self.loop.add_reader(self.fd, self._on_readable)
        self._writing = False
        self._box: Outbox | None = None
        self._cold: asyncio.Task[None] | None = None  # a chunk on its way in a disk thread

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if self.lingering:
            if not data:
                self.close()
            return
        if not data:
            self.eof = True
            self.pause_reading()
            if self.idle:
                self.close()
            else:
                self._close_after_pending()
            return
        self.feed(data)

    def pause_reading(self) -> None:
        if self._reading and not self.closed:
            self._reading = False
            self.loop.remove_reader(self.fd)

    def resume_reading(self) -> None:
        if not self._reading and not self.closed and not self.eof:
            self._reading = True
            self.loop.add_reader(self.fd, self._on_readable)

    def start(self, resp: Response) -> bool:
        box = Outbox(self.sock, resp.parts, self.limits.max_chunk, resident)
        try:
            if box.pump():
                box.record("serve.response")
                if resp.route == "sendfile":
                    resp.route = box.route  # a file that refused sendfile went by the core's fallback route
                return True
        except TruncatedFileError as exc:
            self._truncated(exc)
            return True
        except OSError as exc:
            self._lost(exc)
            return True
        if box.cold:
            self._box = box
            self._to_disk(box)
            return False
        # The socket is full (or the chunk budget is used): go on from a writability callback, like nginx's
        # write event handler. No task, no future: one callback per writable event. Level-triggered, so after
        # a used-up budget it fires again on the next loop iteration, after the other ready connections.
        self._box = box
        self.deadline = time.monotonic() + self.limits.send_timeout
        self._writing = True
        self.loop.add_writer(self.fd, self._on_writable)
        return False

    def _on_writable(self) -> None:
        box = self._box
        assert box is not None
        before = box.sent
        try:
            done = box.pump()
        except TruncatedFileError as exc:
            self._truncated(exc)
            return
        except OSError as exc:
            self._lost(exc)
            return
        if box.sent != before:
            # send_timeout is the longest gap between two successful writes (nginx send_timeout).
            self.deadline = time.monotonic() + self.limits.send_timeout
        if done:
            self._done(box)
        elif box.cold:
            self._to_disk(box)
        elif not self._writing:  # called from _from_disk: wait for writability again
            self._writing = True
            self.loop.add_writer(self.fd, self._on_writable)

    def _done(self, box: Outbox) -> None:
        self._stop_writing()
        box.record("serve.response")
        resp = self.current
        assert resp is not None and self.current_req is not None
        if resp.route == "sendfile":
            resp.route = box.route
        if box.disk_chunks and self.server.log_level <= logs.DISK_WAIT:
            ms = box.disk_wait_s * 1e3
            self.server.log(logs.DISK_WAIT, f"{self.peer}: body waited {ms:.1f} ms for the disk ({box.disk_chunks} "
                            "chunk(s) sent by disk threads)")  # fmt: skip
        self.busy = False
        self.finish(self.current_req, resp)
        self.process()

    def _to_disk(self, box: Outbox) -> None:
        """The next chunk is not in the page cache: sendfile it in a disk thread while the loop serves the rest."""
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)
        self.deadline = INF  # waiting for our disk is not the client's slowness (send_timeout resumes after)
        task = self.loop.create_task(send_cold(self.server.disk, box))
        task.add_done_callback(self._from_disk)
        self._cold = task

    def _from_disk(self, task: asyncio.Task[None]) -> None:
        self._cold = None
        if self.closed or task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, TruncatedFileError):
            self._truncated(exc)
            return
        if isinstance(exc, OSError):
            self._lost(exc)
            return
        if exc is not None:
            self.server.log(logs.APP_ERROR, f"{self.peer}: sending a cold chunk failed: {exc!r}; closing")
            self.close()
            return
        self.deadline = time.monotonic() + self.limits.send_timeout
        self._on_writable()  # go on at once: the next chunk is most likely resident now (read-ahead)

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)
        self._box = None

    def _truncated(self, exc: TruncatedFileError) -> None:
        # The head promised more bytes than the file now has: this connection cannot be reused.
        self.server.log(logs.SHORT_RESPONSE, f"{self.peer}: {exc}; closing the connection")
        self.close()

    def _lost(self, exc: OSError) -> None:
        """A send failed (reset, broken pipe): the client left mid-response."""
        if self.server.log_level <= logs.DISCONNECT:
            self.server.log(logs.DISCONNECT, f"{self.peer}: client disconnected mid-response ({exc.strerror or exc})")
        self.close()

    def close_gracefully(self) -> None:
        if self.closed:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.lingering = True
        self.pending.clear()
        self.deadline = time.monotonic() + LINGER_SECONDS
        if not self._reading and not self.eof:
            self._reading = True
            self.loop.add_reader(self.fd, self._on_readable)
        elif self.eof:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._reading:
            self.loop.remove_reader(self.fd)
            self._reading = False
        self._stop_writing()
        if self._cold is not None:
            self._cold.cancel()  # the job itself finishes on its own duplicates of the descriptors
            self._cold = None
        self.release_current()
        self.sock.close()
        self.server.forget(self)


class TLSConnection(Session, asyncio.Protocol):
    """A TLS connection over an asyncio SSL transport; file bodies by pread + write (a copy, honestly named)."""

    def __init__(self, server: StaticHost) -> None:
        Session.__init__(self, server, "-")
        self.transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's SSL transport is not an asyncio.Transport subclass, but has the same methods.
        self.transport = transport  # type: ignore[assignment]
        peer: Any = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "-"
        self.server.adopt(self)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        self.feed(data)

    def eof_received(self) -> bool:
        # Under TLS the transport closes after EOF whatever we return (asyncio sslproto warns on True), so a
        # client that half-closes gets what is already written; TLS clients close with close_notify anyway.
        self.eof = True
        if self.idle:
            self.close()
        else:
            self._close_after_pending()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def _wait_writable(self) -> None:
        if not self._can_write.is_set():
            await asyncio.wait_for(self._can_write.wait(), self.limits.send_timeout)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed and not self.eof:
            self.transport.resume_reading()

    def start(self, resp: Response) -> bool:
        assert self.transport is not None
        if all(isinstance(p, bytes) for p in resp.parts):
            for p in resp.parts:
                self.transport.write(p)  # type: ignore[arg-type]
            return True
        resp.route = "readwrite"  # never claim zero-copy over TLS: every file byte is copied to encrypt it
        self.deadline = INF
        self._task = self.loop.create_task(self._write(resp))
        return False

    async def _write(self, resp: Response) -> None:
        assert self.transport is not None
        copy = TlsCopy(self.server.disk)
        t0 = time.perf_counter()
        try:
            for p in resp.parts:
                if isinstance(p, bytes):
                    self.transport.write(p)
                    continue
                assert isinstance(p, FileSlice)
                await copy.write(self.transport, p, self._wait_writable)
        except TruncatedFileError as exc:
            self.server.log(logs.SHORT_RESPONSE, f"{self.peer}: {exc}; closing the connection")
            self.transport.abort()
            self.close()
            return
        except (OSError, TimeoutError, asyncio.TimeoutError, asyncio.CancelledError):  # two classes before 3.11
            self.transport.abort()
            self.close()
            return
        finally:
            self._task = None
            wall = time.perf_counter() - t0
            self.server.record("serve.response", "readwrite", copy.moved, wall, copy.disk_wait_s)
            if copy.disk_chunks and self.server.log_level <= logs.DISK_WAIT:
                ms = copy.disk_wait_s * 1e3
                self.server.log(logs.DISK_WAIT, f"{self.peer}: body waited {ms:.1f} ms for the disk "
                                f"({copy.disk_chunks} read(s) by disk threads)")  # fmt: skip
        self.busy = False
        assert self.current_req is not None
        self.finish(self.current_req, resp)
        self.process()

    def close_gracefully(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()  # flushes what is buffered, then closes (TLS close_notify)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.release_current()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.server.forget(self)
