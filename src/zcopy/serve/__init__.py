"""zcopy serve: a zero-copy HTTP/1.1 server for a directory or an ASGI application (pure HTTP rules in their own
modules, I/O in conn/server; the ASGI bridge in serve/asgi/)."""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Callable
from typing import Any

from zcopy.serve.server import Server

__all__ = ["Server", "run"]


def run(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    fd: int | None = None,
    loop: Any = "auto",
    http: Any = "auto",
    http2: bool = False,
    ws: Any = "auto",
    ws_max_size: int = 16777216,
    ws_max_queue: int = 32,
    ws_ping_interval: float | None = 20.0,
    ws_ping_timeout: float | None = 20.0,
    ws_per_message_deflate: bool = True,
    lifespan: str = "auto",
    interface: str = "auto",
    reload: bool = False,
    reload_dirs: list[str] | str | None = None,
    reload_includes: list[str] | str | None = None,
    reload_excludes: list[str] | str | None = None,
    reload_delay: float = 0.25,
    workers: int | None = None,
    env_file: str | os.PathLike[str] | None = None,
    log_config: Any = "default",
    log_level: str | int | None = None,
    access_log: bool = True,
    proxy_headers: bool = True,
    server_header: bool = True,
    date_header: bool = True,
    forwarded_allow_ips: list[str] | str | None = None,
    root_path: str = "",
    limit_concurrency: int | None = None,
    backlog: int = 2048,
    limit_max_requests: int | None = None,
    limit_max_requests_jitter: int = 0,
    timeout_keep_alive: float = 5,
    timeout_graceful_shutdown: float | None = None,
    timeout_worker_healthcheck: int = 5,
    ssl_keyfile: str | os.PathLike[str] | None = None,
    ssl_certfile: str | os.PathLike[str] | None = None,
    ssl_keyfile_password: str | None = None,
    ssl_version: int = int(ssl.PROTOCOL_TLS_SERVER),
    ssl_cert_reqs: int = int(ssl.CERT_NONE),
    ssl_ca_certs: str | os.PathLike[str] | None = None,
    ssl_ciphers: str | None = None,
    ssl_context_factory: Callable[..., ssl.SSLContext] | None = None,
    headers: list[tuple[str, str]] | None = None,
    use_colors: bool | None = None,
    app_dir: str | None = None,
    factory: bool = False,
    h11_max_incomplete_event_size: int | None = None,
    reset_contextvars: bool = False,
    # zcopy's own
    grace: float = 10.0,
    access_log_file: str | None = None,
    json_log: bool = False,
    quiet: bool = False,
    **server_kwargs: Any,
) -> int:
    """Serve an ASGI application (an object, or "MODULE:ATTR") until SIGTERM/SIGINT, as ``uvicorn.run`` does.

    Takes every keyword argument of ``uvicorn.run`` with its meaning (serve/settings.py maps them; one that
    cannot apply here is logged once and serving goes on), plus zcopy's: ``grace`` (SIGTERM's wait when
    ``timeout_graceful_shutdown`` is None), ``access_log_file``/``json_log`` (Common Log Format or JSON lines to a
    file), ``quiet`` (no start-up line), and ``Server``'s own limits (``header_timeout``, ``max_connections``...).
    ``log_config="default"`` is uvicorn's default configuration. Returns the exit status: 0 after a clean
    shutdown, 3 when the application's startup failed.
    """
    values = dict(locals())  # first: exactly the parameters
    values.pop("server_kwargs")
    from zcopy.serve.settings import Settings
    from zcopy.serve.startup import app_plan, start

    if "keepalive_timeout" in server_kwargs:  # zcopy's older name for timeout_keep_alive
        values["timeout_keep_alive"] = server_kwargs.pop("keepalive_timeout")
    names = {f.name for f in dataclasses.fields(Settings)}
    settings = Settings(**{k: v for k, v in values.items() if k in names}, server_kwargs=server_kwargs)
    return start(app_plan(settings), settings)
