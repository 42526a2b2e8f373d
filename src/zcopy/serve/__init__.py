"""zcopy serve: a zero-copy HTTP/1.1 server for a directory or an ASGI application (pure HTTP rules in their own
modules, I/O in conn/server; the ASGI bridge in serve/asgi/)."""

from __future__ import annotations

from typing import Any

from zcopy.serve.server import Server

__all__ = ["Server", "run"]


def run(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    workers: int = 1,
    loop: str = "auto",
    factory: bool = False,
    app_dir: str | None = ".",
    root_path: str = "",
    proxy_headers: bool = False,
    forwarded_allow_ips: str | list[str] = "127.0.0.1",
    lifespan: str = "auto",
    limit_concurrency: int | None = None,
    timeout_keep_alive: float | None = None,
    grace: float = 10.0,
    access_log: str | None = None,
    json_log: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    quiet: bool = False,
    log_level: str | int = "info",
    **server_kwargs: Any,
) -> int:
    """Serve an ASGI application (an object, or "MODULE:ATTR") until SIGTERM/SIGINT, like ``uvicorn.run``.

    Returns the exit status (0 after a clean shutdown, 3 when the application's startup failed). ``log_level`` is
    uvicorn's (critical, error, warning, info, debug, trace; see docs/serve.md#logging); ``quiet`` drops the
    start-up line only. Further keyword arguments go to ``Server`` (e.g. ``header_timeout``, ``max_connections``).
    """
    from zcopy.serve.logs import level
    from zcopy.serve.workers import Options
    from zcopy.serve.workers import run as run_workers

    level(log_level)  # a bad level is a ValueError before the app is imported
    label = app if isinstance(app, str) else getattr(app, "__qualname__", type(app).__name__)
    if isinstance(app, str):
        from zcopy.serve.asgi.load import load_app

        app = load_app(app, app_dir=app_dir, factory=factory)
    elif factory:
        app = app()
    allow = forwarded_allow_ips.split(",") if isinstance(forwarded_allow_ips, str) else list(forwarded_allow_ips)
    kwargs = dict(
        root_path=root_path,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=[a.strip() for a in allow if a.strip()],
        lifespan=lifespan,
        limit_concurrency=limit_concurrency,
        **server_kwargs,
    )
    if timeout_keep_alive is not None:
        kwargs["keepalive_timeout"] = timeout_keep_alive
    opts = Options(
        app=app,
        app_label=str(label),
        uds=uds,
        host=host,
        port=port,
        workers=workers,
        loop=loop,
        grace=grace,
        access_log=access_log,
        json_log=json_log,
        tls_cert=tls_cert,
        tls_key=tls_key,
        quiet=quiet,
        log_level=log_level,
        server_kwargs=kwargs,
    )
    return run_workers(opts)
