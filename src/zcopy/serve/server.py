"""The server: listening socket, accept loop, connection limits, deadline sweeper, graceful shutdown.

One engine for both modes: ``Server(root)`` answers with the static file handler (conn.py, no task per request),
``Server(app=asgi_app)`` with the ASGI bridge (asgi/http.py, one app task per request, lifespan around it).
Usable as a library (``await server.start()``, ``await server.serve_forever()``) and by ``zcopy serve``. The
accept loop is a plain add_reader on a non-blocking listening socket, on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import logging
import os
import resource
import socket
import ssl as ssl_module
import sys
import time
from typing import TYPE_CHECKING, Any

from zcopy import observe as _observe  # not `from zcopy.observe import`: that rebinds zcopy.observe to the module
from zcopy.aio import MAX_CHUNK
from zcopy.serve import logs
from zcopy.serve.accesslog import AccessLog
from zcopy.serve.cache import FileCache
from zcopy.serve.config import AppConfig, Limits
from zcopy.serve.conn import RawConnection, Session, TLSConnection
from zcopy.serve.errnos import ACCEPT_RETRY, EXHAUSTED
from zcopy.serve.handler import Handler
from zcopy.serve.handshake import Handshake
from zcopy.serve.resolve import Resolver
from zcopy.serve.transport import DISK_THREADS, DiskPool

if TYPE_CHECKING:
    from zcopy.serve.asgi.lifespan import Lifespan
    from zcopy.serve.asgi.scope import Trusted

# Accept at most this many connections per readable event, so a connection storm cannot monopolise the loop.
ACCEPT_BATCH = 64
# Defaults, chosen against nginx's: client_header_timeout 60s and keepalive_timeout 75s are generous for a
# file server on the open internet; 10 s to send a head and 30 s idle are what slowloris defenses recommend.
HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 30.0
SEND_TIMEOUT = 60.0  # nginx send_timeout: max gap between two successful writes to a stalled reader
MAX_CONNECTIONS = 10_000
MAX_HEADER_BYTES = 16 << 10  # 16 KiB: more than any browser sends; nginx large_client_header_buffers 4×8k
MAX_URL_BYTES = 8 << 10  # 8 KiB request-target, RFC 9112 §3 recommends supporting at least 8000 octets
BACKLOG = 1024
# After an accept that failed for lack of descriptors, wait this long before the next try: long enough not to
# spin on a listening socket that stays readable, short against any client's connect timeout.
ACCEPT_RETRY_DELAY = 0.1
# A condition that can repeat for every request (out of descriptors) is logged at most once per this interval,
# and the repeats in between counted into the next line: a line per request would add disk writes to an overload.
LOG_INTERVAL = 1.0


class Server:
    """An HTTP/1.1 server for the files under ``root`` or for the ASGI application ``app``; see docs/serve.md."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        app: Any = None,
        root_path: str = "",
        proxy_headers: bool = False,
        forwarded_allow_ips: tuple[str, ...] | list[str] = ("127.0.0.1",),
        lifespan: str = "auto",
        limit_concurrency: int | None = None,
        ws: str = "auto",
        ws_max_size: int = 16 << 20,
        ws_ping_interval: float = 20.0,
        ws_ping_timeout: float = 20.0,
        ws_max_queue: int = 32,
        ws_per_message_deflate: bool = True,
        server_header: bool = True,
        date_header: bool = True,
        headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]] = (),
        uds: str | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
        list_dirs: bool = False,
        dotfiles: bool = False,
        follow_symlinks: bool = True,
        precompressed: bool = True,
        cache_entries: int = 256,
        cache_valid: float = 1.0,
        header_timeout: float = HEADER_TIMEOUT,
        handshake_timeout: float | None = None,
        body_timeout: float | None = None,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        send_timeout: float = SEND_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_url_bytes: int = MAX_URL_BYTES,
        max_chunk: int = MAX_CHUNK,
        disk_threads: int = DISK_THREADS,
        access_log: AccessLog | None = None,
        ssl: ssl_module.SSLContext | None = None,
        backlog: int = BACKLOG,
        log_level: str | int = "info",
    ) -> None:
        if (root is None) == (app is None):
            raise TypeError("Server needs a root directory or app=, not both")
        # Messages below this are neither formatted nor written (logs.py: uvicorn's levels and what each event is).
        self.log_level = logs.level(log_level)
        self.app_config: AppConfig | None = None
        if root is not None:
            if not os.path.isdir(root):
                raise NotADirectoryError(f"not a directory: {root}")
            self.resolver: Resolver | None = Resolver(root, dotfiles=dotfiles, follow_symlinks=follow_symlinks)
            self.cache: FileCache | None = FileCache(max_entries=cache_entries, valid=cache_valid)
            self.handler = Handler(self.resolver, self.cache, list_dirs=list_dirs, precompressed=precompressed)
        else:
            from zcopy.serve.asgi.cycle import HeadDefaults
            from zcopy.serve.asgi.http import RawConnection as AsgiRaw
            from zcopy.serve.asgi.scope import Trusted

            self._asgi_raw = AsgiRaw
            if lifespan not in ("auto", "on", "off"):
                raise ValueError(f"lifespan must be auto, on or off, not {lifespan!r}")
            if limit_concurrency is not None and limit_concurrency < 1:
                raise ValueError("limit_concurrency must be at least 1")
            if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
                raise ValueError(f"root_path must start with '/' and not end with it: {root_path!r}")
            self.resolver = self.cache = None
            self.app_config = AppConfig(
                app,
                root_path=root_path,
                proxy_headers=proxy_headers,
                forwarded_allow_ips=tuple(forwarded_allow_ips),
                lifespan=lifespan,
                limit_concurrency=limit_concurrency,
                ws=ws,
                ws_max_size=ws_max_size,
                ws_ping_interval=ws_ping_interval,
                ws_ping_timeout=ws_ping_timeout,
                ws_max_queue=ws_max_queue,
                ws_per_message_deflate=ws_per_message_deflate,
                server_header=server_header,
                date_header=date_header,
                headers=tuple(headers),
                head=HeadDefaults(server_header, date_header, headers),
            )
            self.trusted: Trusted = Trusted.parse(list(forwarded_allow_ips))
        self.state: dict[str, Any] | None = None  # the lifespan state, copied into every request scope
        self.in_app = 0  # requests inside the application now (--limit-concurrency)
        self.tasks: set[asyncio.Task[None]] = set()  # app tasks running, cancelled when the grace runs out
        self.lifespan: Lifespan | None = None
        self.host, self.port = host, port
        self.uds = uds
        self._sock = sock
        self._tcp = uds is None
        self.reuse_port = reuse_port
        self.limits = Limits(
            header_timeout=header_timeout,
            keepalive_timeout=keepalive_timeout,
            send_timeout=send_timeout,
            max_header_bytes=max_header_bytes,
            max_url_bytes=max_url_bytes,
            max_chunk=max_chunk,
            body_timeout=header_timeout if body_timeout is None else body_timeout,
        )
        # The TLS handshake is part of "sending the head" for a slowloris: by default it gets the same budget.
        self.handshake_timeout = header_timeout if handshake_timeout is None else handshake_timeout
        self.max_connections = max_connections
        # Threads that send cold body chunks (not in the page cache) off the loop: serve/transport.py.
        self.disk = DiskPool(disk_threads)
        self.access_log = access_log
        self.ssl = ssl
        self.backlog = backlog
        # Every accepted socket, counted against max_connections from accept on: static Sessions, ASGI
        # Connections, and TLS Handshakes not done yet.
        self.connections: set[Any] = set()
        self._logged: set[str] = set()  # causes logged once (log_once)
        self._throttled: dict[str, tuple[float, int]] = {}  # cause → (time of its last line, repeats since)
        self.closing = False
        self.route = "readwrite" if ssl is not None else "sendfile"
        self._accepting = False
        self._spare: int | None = None  # a descriptor kept in reserve for the 503 at EMFILE (_refuse_one)
        self._peak = 0  # most connections open at a sweep since the heap was last trimmed
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "server not started"
        return self._loop

    @property
    def address(self) -> tuple[str, int]:
        assert self._sock is not None, "server not started"
        addr: Any = self._sock.getsockname()
        if isinstance(addr, str):
            return addr, 0  # a unix socket: its path
        return str(addr[0]), int(addr[1])

    def _listen(self) -> socket.socket:
        if self.uds is not None:
            return listen_unix(self.uds, self.backlog)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((self.host, self.port))
        s.listen(self.backlog)
        return s

    async def start(self) -> None:
        """Bind (unless a socket was given) and start accepting; returns once the server is listening."""
        self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        raise_fd_limit()
        if self._sock is None:
            self._sock = self._listen()
        self._spare = _take_spare()
        self._sock.setblocking(False)
        self._tcp = self._sock.family in (socket.AF_INET, socket.AF_INET6)  # not a unix socket (--uds, --fd)
        if self.app_config is not None:
            await self._start_app()
        self._resume_accepting()
        self._schedule_sweep()

    async def _start_app(self) -> None:
        """Lifespan startup (raises LifespanError when the app refuses to start); state for the scopes."""
        from zcopy.serve.asgi.lifespan import Lifespan

        assert self.app_config is not None
        self.lifespan = Lifespan(self.app_config.app, self.app_config.lifespan, self.log, self.log_exception)
        await self.lifespan.startup()
        self.state = self.lifespan.state if self.lifespan.supported else None

    def _tls_factory(self) -> Any:
        if self.app_config is not None:
            from zcopy.serve.asgi.http import TLSConnection as AsgiTLS

            return lambda: AsgiTLS(self)
        return lambda: TLSConnection(self)

    # -- accepting --------------------------------------------------------------------------------------
    def _resume_accepting(self) -> None:
        if not self._accepting and not self.closing and self._sock is not None:
            self._accepting = True
            self.loop.add_reader(self._sock.fileno(), self._on_accept)

    def _pause_accepting(self) -> None:
        if self._accepting and self._sock is not None:
            self._accepting = False
            self.loop.remove_reader(self._sock.fileno())

    def _on_accept(self) -> None:
        assert self._sock is not None
        for _ in range(ACCEPT_BATCH):
            if len(self.connections) >= self.max_connections:
                # Leave the rest in the kernel's backlog: accepted later, when a connection closes.
                self._pause_accepting()
                return
            try:
                sock, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RETRY:
                    continue  # that connection is gone (reset, refused by a firewall...): the next one
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    refused = self._refuse_one(exc)
                    if refused is None:
                        return  # the queue is empty
                    if refused:
                        continue  # answered 503 through the spare descriptor: the next one
                # Out of descriptors (EXHAUSTED) or worse: the connection stays in the backlog. Retry shortly
                # instead of spinning on a listening socket that stays readable.
                self.log_throttled(
                    "accept: exhausted" if exc.errno in EXHAUSTED else "accept",
                    f"accept failed ({exc.errno}: {exc.strerror}); retrying in {ACCEPT_RETRY_DELAY:g} s",
                )
                self._pause_accepting()
                self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting)
                return
            try:
                sock.setblocking(False)
                if self._tcp:
                    # Nagle would hold the last segment of each response for the peer's delayed ACK (40 ms);
                    # MSG_MORE already batches head and body, so NODELAY costs nothing here.
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # reset between accept and here
                sock.close()
                continue
            if self.ssl is not None:
                peer = str(addr[0]) if isinstance(addr, tuple) else "-"
                self.connections.add(Handshake(self, sock, peer, self.ssl, self._tls_factory()))
            elif self.app_config is not None:
                client = (str(addr[0]), int(addr[1])) if isinstance(addr, tuple) else None
                self.connections.add(self._asgi_raw(self, sock, client))
            else:
                self.connections.add(RawConnection(self, sock, str(addr[0]) if isinstance(addr, tuple) else "-"))
            if self.log_level <= logs.CONNECTION:
                peer = str(addr[0]) if isinstance(addr, tuple) else "-"
                self.log(logs.CONNECTION, f"{peer}: connection accepted ({len(self.connections)} open)")

    def _refuse_one(self, exc: OSError) -> bool | None:
        """Out of descriptors: give the spare one up to accept the next connection, answer it 503 with
        Retry-After (plain HTTP; under TLS it is only closed), close it, take the spare back. True when one was
        refused; None when no connection was waiting; False when there is no spare or accept failed otherwise:
        the caller then waits and retries (the connection stays queued)."""
        if self._spare is None:
            return False
        assert self._sock is not None
        os.close(self._spare)
        self._spare = None
        try:
            try:
                sock, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return None  # Linux says EMFILE before it looks at the queue: nobody was waiting after all
            except OSError:
                return False
            with sock:
                peer = str(addr[0]) if isinstance(addr, tuple) else "-"
                done = "answered 503" if self.ssl is None else "closed (TLS: no 503 before a handshake)"
                why = f"accept failed ({exc.errno}: {exc.strerror}); {peer} {done} through the spare descriptor"
                self.log_throttled("accept: refused", why)
                if self.ssl is None:
                    with contextlib.suppress(OSError):
                        sock.setblocking(False)
                        with contextlib.suppress(BlockingIOError):
                            sock.recv(65536)  # what already came, so our close is a FIN, not an RST over the 503
                        sock.send(_OVERLOADED)
                        sock.shutdown(socket.SHUT_WR)
            return True
        finally:
            self._spare = _take_spare()

    def adopt(self, conn: Session) -> None:
        """A TLS connection whose handshake is done joins our bookkeeping (deadlines, shutdown).

        Its slot was counted at accept by its Handshake (forgotten right after this), so there is no limit check.
        """
        if self.closing:
            conn.close()
            return
        self.connections.add(conn)

    def forget(self, conn: Any) -> None:
        self.connections.discard(conn)
        if self.log_level <= logs.CONNECTION and not getattr(conn, "handed_over", False):
            self.log(logs.CONNECTION, f"{conn.peer}: connection closed ({len(self.connections)} open)")
        if len(self.connections) < self.max_connections:
            self._resume_accepting()
        if self.closing and not self.connections and self._closed is not None:
            self._closed.set()

    # -- deadlines ------------------------------------------------------------------------------------
    def _schedule_sweep(self) -> None:
        # One timer for all connections, ticking at a quarter of the shortest timeout (≤ 1 s): cheaper than a
        # timer per request, and a deadline is overrun by at most 25 %.
        lim = self.limits
        shortest = min(
            lim.header_timeout, self.handshake_timeout, lim.keepalive_timeout, lim.send_timeout, lim.body_timeout
        )
        tick = min(1.0, max(0.05, shortest / 4))
        self._sweeper = self.loop.call_later(tick, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.connections if c.deadline < now]:
            conn.on_deadline()
        open_now = len(self.connections)
        self._peak = max(self._peak, open_now)
        if self._peak >= TRIM_AFTER and open_now <= self._peak // 8:
            # Most of a crowd has gone (e.g. 2,000 TLS readers): hand the heap their buffers held back to the
            # system, which free() alone leaves with the process (issue #20 F6: RSS stayed at its peak).
            trim_heap()
            self._peak = open_now
        self._schedule_sweep()

    # -- life cycle -----------------------------------------------------------------------------------
    async def serve_forever(self) -> None:
        """Serve until close() (or cancellation); start() first if needed."""
        if self._loop is None:
            await self.start()
        assert self._closed is not None
        try:
            await self._closed.wait()
        finally:
            if not self.closing:
                await self.shutdown(0)

    def close(self) -> None:
        """Stop accepting and close idle connections; in-flight responses finish with Connection: close."""
        if self.closing:
            return
        self.closing = True
        self._pause_accepting()
        if self._sock is not None:
            self._sock.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        for conn in list(self.connections):
            if conn.idle:
                conn.close()
        if not self.connections and self._closed is not None:
            self._closed.set()

    async def wait_closed(self, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for in-flight responses, then cut the rest; release everything.

        With an app: requests still inside it when the grace runs out are cancelled, then lifespan shutdown runs.
        """
        assert self._closed is not None
        deadline = time.monotonic() + grace
        try:
            await asyncio.wait_for(self._closed.wait(), grace)
        except (TimeoutError, asyncio.TimeoutError):  # two classes before Python 3.11
            if self.connections:
                self.log(logs.DEGRADED, f"grace period over: closing {len(self.connections)} connection(s)")
            for conn in list(self.connections):
                conn.close()
        if self.tasks:
            _, late = await asyncio.wait(set(self.tasks), timeout=max(0.0, deadline - time.monotonic()))
            if late:
                self.log(logs.DEGRADED, f"grace period over: cancelling {len(late)} request(s) still in the app")
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.lifespan is not None:
            await self.lifespan.shutdown()
            self.lifespan = None
        self.disk.close()
        if self.cache is not None:
            self.cache.clear()
        if self.resolver is not None:
            self.resolver.close()
        if self.access_log is not None:
            self.access_log.close()

    async def shutdown(self, grace: float = 10.0) -> None:
        self.close()
        await self.wait_closed(grace)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown(1.0)

    # -- reporting ------------------------------------------------------------------------------------
    def log(self, level: int, message: str) -> None:
        """Write ``message`` if ``level`` (an event of logs.py) is at or above --log-level. A caller that would
        format a frequent message first checks ``level >= self.log_level`` itself."""
        if level >= self.log_level:
            say(message, level)

    def log_once(self, cause: str, message: str, level: int = logs.REPEATED) -> None:
        """Log the first occurrence of ``cause`` only: a flood of bad clients must not become a flood of lines."""
        if level >= self.log_level and cause not in self._logged:
            self._logged.add(cause)
            say(f"{message} (further '{cause}' events are not logged)", level)

    def log_throttled(self, cause: str, message: str, level: int = logs.REPEATED) -> None:
        """Log ``message`` unless ``cause`` was logged less than LOG_INTERVAL ago; then count it for the next line."""
        if level < self.log_level:
            return
        now = time.monotonic()
        last, repeats = self._throttled.get(cause, (-LOG_INTERVAL, 0))
        if now - last < LOG_INTERVAL:
            self._throttled[cause] = (last, repeats + 1)
            return
        self._throttled[cause] = (now, 0)
        say(message + (f" ({repeats} more like it since the last line)" if repeats else ""), level)

    def log_exception(self, level: int, message: str) -> None:
        """``message`` and the traceback of the exception being handled (formatted only when it is written)."""
        if level >= self.log_level:
            if _configured():
                _logger.log(level, message, exc_info=True)
            else:
                import traceback

                say(message + "\n" + traceback.format_exc().rstrip("\n"), level)

    def record(self, op: str, route: str, nbytes: int, wall_s: float, disk_wait_s: float = 0.0) -> None:
        user_bytes = nbytes if route == "readwrite" else 0
        _observe.record(op, route, nbytes, user_bytes=user_bytes, wall_s=wall_s, disk_wait_s=disk_wait_s)


# uvicorn's logger name, so a uvicorn --log-config applies unchanged (logconfig.py says why).
_logger = logging.getLogger("uvicorn.error")
_parent = logging.getLogger("uvicorn")


def _configured() -> bool:
    """Has someone (logconfig.configure, a --log-config, the embedding program) given our loggers handlers?"""
    return bool(_logger.handlers or _parent.handlers)


def say(message: str, level: int = logs.INFO) -> None:
    """One record to the server's logger (``uvicorn.error``; logconfig.py sets its handlers and format). Its
    StreamHandler writes a line in one write(2): lines of workers sharing a pipe do not interleave.

    A Server used as a library, whose uvicorn loggers nobody configured, writes ``zcopy serve: message`` lines
    to stderr itself (logging's last resort would drop everything below WARNING)."""
    if _configured():
        _logger.log(level, message)
    else:
        sys.stderr.write(f"zcopy serve: {message}\n")
        sys.stderr.flush()


def listen_unix(path: str, backlog: int) -> socket.socket:
    """A listening unix socket at ``path``; a stale socket file left by a dead server is replaced."""
    import stat

    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(backlog)
    return s


# Trim the heap when the connections open fall to an eighth of a peak of at least this many (see _sweep).
TRIM_AFTER = 100


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; elsewhere (musl) there is nothing to call
    except (OSError, AttributeError):
        return None


def trim_heap() -> None:
    """malloc_trim(0): give free heap pages back to the system (glibc keeps them for reuse otherwise)."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)


# The answer to a connection accepted through the spare descriptor: the server is out of them (see _refuse_one).
_OVERLOADED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\n503 Service Unavailable\n"
)


def _take_spare() -> int | None:
    """One descriptor held in reserve (on /dev/null) for answering 503 when accept(2) fails with EMFILE."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def raise_fd_limit() -> None:
    """Lift the soft RLIMIT_NOFILE to the hard limit: each connection and cached file holds one fd."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
