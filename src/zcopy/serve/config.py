"""What a connection may see of its server: frozen limits and a narrow Host protocol (no I/O here).

Connections (static ``conn.py``, ASGI ``asgi/http.py``) are written against ``Host``; ``server.py`` implements it
and imports the connections, never the other way round, so there is no import cycle between the engine's files.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from zcopy.serve.accesslog import AccessLog
    from zcopy.serve.transport import DiskPool


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits and deadlines, fixed when the server is made (defaults and reasons in server.py)."""

    header_timeout: float
    keepalive_timeout: float
    send_timeout: float
    max_header_bytes: int
    max_url_bytes: int
    max_chunk: int
    # ASGI: the longest gap between two pieces of a request body (server.py's default: header_timeout).
    body_timeout: float = 10.0


class Host(Protocol):
    """The server as a connection sees it: its loop, limits, shutdown flag, log and bookkeeping."""

    limits: Limits
    closing: bool
    access_log: AccessLog | None
    log_level: int  # logs.py: compare before formatting a message that could be frequent
    disk: DiskPool  # transport.py: where cold body chunks wait for the disk, off the loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def adopt(self, conn: Any) -> None: ...

    def forget(self, conn: Any) -> None: ...

    def log(self, level: int, message: str) -> None: ...

    def log_exception(self, level: int, message: str) -> None: ...

    def log_throttled(self, cause: str, message: str, level: int = ...) -> None: ...

    def record(self, op: str, route: str, nbytes: int, wall_s: float, disk_wait_s: float = ...) -> None: ...


@dataclass(frozen=True, slots=True)
class AppConfig:
    """How an ASGI application is served (the `zcopy serve --app` options; see docs/serve.md)."""

    app: Any
    root_path: str = ""
    proxy_headers: bool = False
    # uvicorn's default: only a proxy on this host is trusted to say who the client is.
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    lifespan: str = "auto"  # auto | on | off
    limit_concurrency: int | None = None  # requests in the app at once; beyond → 503 without calling it
    ws: str = "auto"  # auto (wsproto when installed) | none
    ws_max_size: int = 16 << 20  # uvicorn's default --ws-max-size: 16 MiB per message
    ws_ping_interval: float = 20.0  # seconds between our pings (uvicorn's default), 0 = never
    ws_ping_timeout: float = 20.0  # a pong must come within this, or the connection is closed
    ws_max_queue: int = 32  # uvicorn's --ws-max-queue: messages from the peer queued before reading pauses
    ws_per_message_deflate: bool = True  # uvicorn's default: offer permessage-deflate (RFC 7692) when asked
    # Response head lines every response gets unless the app sends its own (uvicorn's --server-header,
    # --date-header and --header NAME:VALUE, lower-cased and encoded once at start-up).
    server_header: bool = True
    date_header: bool = True
    headers: tuple[tuple[bytes, bytes], ...] = ()
    head: Any = None  # asgi.cycle.HeadDefaults made from the three above (Server does it once)
