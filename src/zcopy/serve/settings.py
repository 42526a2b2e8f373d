"""uvicorn's settings → what zcopy serves: one place for `zcopy serve --app ...` and ``zcopy.serve.run(...)``.

``Settings`` has every keyword argument of ``uvicorn.run`` under its name, default and meaning (a test checks the
set against the installed uvicorn), plus zcopy's own. ``plan()`` turns them into workers.Options and the notes to
log once at start-up: for each setting that cannot apply here (``--http h11``: zcopy parses with httptools), the
note says why, and serving goes on. Nothing is refused that uvicorn would accept.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zcopy.serve import fields, logs

# uvicorn's defaults where zcopy had none of its own.
SSL_PROTOCOL_VERSION = int(ssl.PROTOCOL_TLS_SERVER)
BACKLOG = 2048
KEEPALIVE_APP = 5.0  # uvicorn's --timeout-keep-alive; `zcopy serve DIR` keeps its own 30 s
LOOPS = ("auto", "asyncio", "uvloop")
PARSER = "httptools"  # the only HTTP/1.1 parser zcopy runs (llhttp)


class SettingsError(Exception):
    """A value no server could use (a missing TLS file, a bad header); the message names the option."""


@dataclass
class Settings:
    """``uvicorn.run``'s keyword arguments (same names and defaults unless a comment says otherwise)."""

    app: Any = None
    host: str = "127.0.0.1"
    port: int = 8000
    uds: str | None = None
    fd: int | None = None
    loop: Any = "auto"
    http: Any = "auto"
    http2: bool = False
    ws: Any = "auto"
    ws_max_size: int = 16 << 20
    ws_max_queue: int = 32
    ws_ping_interval: float | None = 20.0
    ws_ping_timeout: float | None = 20.0
    ws_per_message_deflate: bool = True
    lifespan: str = "auto"
    interface: str = "auto"
    reload: bool = False
    reload_dirs: list[str] | str | None = None
    reload_includes: list[str] | str | None = None
    reload_excludes: list[str] | str | None = None
    reload_delay: float = 0.25
    workers: int | None = None
    env_file: str | os.PathLike[str] | None = None
    log_config: Any = "default"  # uvicorn's default is its LOGGING_CONFIG dict: "default" = ours (logconfig.py)
    log_level: str | int | None = None
    access_log: bool = True
    proxy_headers: bool = True
    server_header: bool = True
    date_header: bool = True
    forwarded_allow_ips: list[str] | str | None = None
    root_path: str = ""
    limit_concurrency: int | None = None
    backlog: int = BACKLOG
    limit_max_requests: int | None = None
    limit_max_requests_jitter: int = 0
    timeout_keep_alive: float = KEEPALIVE_APP
    timeout_graceful_shutdown: float | None = None
    timeout_worker_healthcheck: int = 5
    ssl_keyfile: str | os.PathLike[str] | None = None
    ssl_certfile: str | os.PathLike[str] | None = None
    ssl_keyfile_password: str | None = None
    ssl_version: int = SSL_PROTOCOL_VERSION
    ssl_cert_reqs: int = int(ssl.CERT_NONE)
    ssl_ca_certs: str | os.PathLike[str] | None = None
    ssl_ciphers: str | None = None
    ssl_context_factory: Callable[..., ssl.SSLContext] | None = None
    headers: list[tuple[str, str]] | None = None
    use_colors: bool | None = None
    app_dir: str | None = None
    factory: bool = False
    h11_max_incomplete_event_size: int | None = None
    reset_contextvars: bool = False
    # -- zcopy's own ------------------------------------------------------------------------------------
    grace: float = 10.0  # seconds to finish in-flight work on SIGTERM, when timeout_graceful_shutdown is None
    access_log_file: str | None = None  # Common Log Format (or JSON) lines to a file ("-" = stderr), SIGHUP reopens
    json_log: bool = False
    quiet: bool = False  # no start-up lines
    explicit: frozenset[str] = frozenset()  # names the user gave (the CLI knows): notes only for those
    server_kwargs: dict[str, Any] = field(default_factory=dict)  # zcopy.serve.Server's own (header_timeout...)


@dataclass
class Plan:
    """What to run: the worker options, the label for the start-up line, and the notes to log once."""

    options: Any  # workers.Options (imported lazily: this module is imported by the CLI before any server code)
    notes: list[tuple[int, str]]
    reload: bool = False


def given(s: Settings, name: str, default: Any) -> bool:
    """Did the user ask for ``name``? (From the CLI: it was on the command line; from run(): not the default.)"""
    return name in s.explicit if s.explicit else getattr(s, name) != default


def parse_header(text: str) -> tuple[str, str]:
    """uvicorn's --header NAME:VALUE (the value may itself contain colons)."""
    name, sep, value = text.partition(":")
    if not sep or not name:
        raise SettingsError(f"--header: expected 'Name:Value', got {text!r}")
    return name, value


def encode_headers(headers: list[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    out = []
    for name, value in headers:
        n, v = name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")
        try:
            fields.check(n, v)  # the rule every response header meets (a token name; no CR, LF, NUL or other CTL)
        except fields.BadField:
            raise SettingsError(f"--header: invalid header {name!r}: {value!r}") from None
        out.append((n, v))
    return tuple(out)


def _loop(s: Settings, notes: list[tuple[int, str]]) -> str:
    name = s.loop if isinstance(s.loop, str) else "auto"
    if name in LOOPS:
        return name
    if name in ("none", "zuvloop"):
        notes.append((logs.DEGRADED, f"--loop {name}: zcopy runs asyncio or uvloop; using uvloop when installed"))
    else:
        notes.append((logs.DEGRADED, f"--loop {s.loop!r}: zcopy does not load custom loops; using auto"))
    return "auto"


def _ws(s: Settings, notes: list[tuple[int, str]]) -> str:
    name = s.ws if isinstance(s.ws, str) else "?"
    if name in ("auto", "none", "wsproto"):
        return name
    if name in ("websockets", "websockets-sansio"):
        notes.append((logs.STARTED, f"--ws {name}: zcopy's WebSocket protocol is wsproto; serving WebSockets with it"))
    else:
        notes.append((logs.DEGRADED, f"--ws {s.ws!r}: zcopy does not load custom protocols; using auto (wsproto)"))
    return "auto"


def _http(s: Settings, notes: list[tuple[int, str]]) -> None:
    name = s.http if isinstance(s.http, str) else "?"
    if name not in ("auto", PARSER):
        notes.append((logs.STARTED, f"--http {name}: zcopy parses HTTP/1.1 with {PARSER} (llhttp) only; using it"))
    if s.http2:
        notes.append(
            (logs.DEGRADED, "--http2: zcopy does not implement HTTP/2; serving HTTP/1.1 (TLS clients negotiate it "
                            "by ALPN, and h2c upgrade requests are answered in HTTP/1.1)")
        )  # fmt: skip
    if s.h11_max_incomplete_event_size is not None:
        notes.append(
            (logs.STARTED, f"--h11-max-incomplete-event-size {s.h11_max_incomplete_event_size}: applied as the "
                           "largest request head (--max-header-bytes): what h11 buffers is the incomplete head")
        )  # fmt: skip


def tls_context(s: Settings) -> ssl.SSLContext | None:
    """uvicorn's SSL context from the --ssl-* options (or ssl_context_factory); SettingsError names the cause."""

    def default() -> ssl.SSLContext:
        if not s.ssl_certfile:
            raise SettingsError("--ssl-keyfile needs --ssl-certfile (the certificate, PEM)")
        for what, path in (("certificate", s.ssl_certfile), ("key", s.ssl_keyfile), ("CA file", s.ssl_ca_certs)):
            if path is not None:
                try:
                    with open(path, "rb"):
                        pass
                except OSError as exc:
                    raise SettingsError(f"cannot read TLS {what} {os.fspath(path)}: {exc.strerror or exc}") from None
        try:
            ctx = ssl.SSLContext(s.ssl_version)
            password = s.ssl_keyfile_password
            ctx.load_cert_chain(s.ssl_certfile, s.ssl_keyfile, (lambda: password) if password else None)
            ctx.verify_mode = ssl.VerifyMode(s.ssl_cert_reqs)
            if s.ssl_ca_certs:
                ctx.load_verify_locations(s.ssl_ca_certs)
            if s.ssl_ciphers:
                ctx.set_ciphers(s.ssl_ciphers)
        except (ssl.SSLError, ValueError) as exc:
            raise SettingsError(
                f"cannot load TLS certificate {os.fspath(s.ssl_certfile)} with key {s.ssl_keyfile} (not PEM, not a "
                f"matching pair, wrong password, or a bad --ssl-version/--ssl-cert-reqs/--ssl-ciphers): {exc}"
            ) from None
        return ctx

    if s.ssl_context_factory is not None:
        ctx = s.ssl_context_factory(s, default)
        if not isinstance(ctx, ssl.SSLContext):
            raise SettingsError(f"ssl_context_factory must return an ssl.SSLContext, not {type(ctx).__name__}")
        return ctx
    if s.ssl_certfile or s.ssl_keyfile:
        return default()
    return None


def load_env_file(s: Settings, notes: list[tuple[int, str]]) -> None:
    """uvicorn's --env-file: the variables are set before the app is imported (python-dotenv, an optional extra)."""
    if s.env_file is None:
        return
    path = os.fspath(s.env_file)
    if not os.path.isfile(path):
        raise SettingsError(f"--env-file: no such file: {path}")
    try:
        from dotenv import load_dotenv
    except ImportError:
        notes.append(
            (logs.DEGRADED, f"--env-file {path}: python-dotenv is not installed (pip install 'zcopy[standard]'); "
                            "the file was NOT loaded")
        )  # fmt: skip
        return
    notes.append((logs.STARTED, f"Loading environment from '{path}'"))
    load_dotenv(dotenv_path=path)


def forwarded_ips(s: Settings) -> list[str]:
    allow = s.forwarded_allow_ips
    if allow is None:
        allow = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    items = allow.split(",") if isinstance(allow, str) else list(allow)
    return [a.strip() for a in items if a.strip()]


def plan(s: Settings, app: Any, label: str, notes: list[tuple[int, str]]) -> Plan:
    """The worker options for an already imported ``app`` (see load_env_file: the env comes first)."""
    from zcopy.serve.asgi import wrap
    from zcopy.serve.workers import Options

    loop = _loop(s, notes)
    ws = _ws(s, notes)
    _http(s, notes)
    interface = s.interface
    if interface not in wrap.INTERFACES:
        raise SettingsError(f"--interface must be one of {', '.join(wrap.INTERFACES)}, not {interface!r}")
    if interface == "wsgi":
        from zcopy.serve.asgi.wsgi import WSGIApp

        app = WSGIApp(app)
    elif interface == "asgi2" or (interface == "auto" and wrap.is_asgi2(app)):
        app = wrap.asgi2(app)
    if s.reset_contextvars:
        app = wrap.fresh_context(app)
    if given(s, "ws_max_queue", 32) and ws == "none":
        notes.append((logs.STARTED, "--ws-max-queue: WebSockets are off (--ws none)"))
    if given(s, "timeout_worker_healthcheck", 5):
        notes.append(
            (logs.STARTED, "--timeout-worker-healthcheck: zcopy's supervisor sees a dead worker by waitpid(2) at "
                           "once and sends no health-check pings, so there is nothing to time out")
        )  # fmt: skip
    workers = s.workers
    if workers is None:
        workers = int(os.environ.get("WEB_CONCURRENCY", "1") or 1)
    if s.limit_max_requests_jitter < 0:
        raise SettingsError("--limit-max-requests-jitter must be at least 0")
    headers = encode_headers(s.headers or [])
    server_kwargs = dict(s.server_kwargs)
    if s.h11_max_incomplete_event_size is not None:
        server_kwargs["max_header_bytes"] = s.h11_max_incomplete_event_size
    server_kwargs.setdefault("keepalive_timeout", float(s.timeout_keep_alive))
    ping_interval = s.ws_ping_interval or 0.0  # uvicorn's None = no pings
    ping_timeout = s.ws_ping_timeout if s.ws_ping_timeout else 1e9  # None = wait for a pong for ever
    server_kwargs.update(
        root_path=s.root_path,
        proxy_headers=s.proxy_headers,
        forwarded_allow_ips=forwarded_ips(s),
        lifespan=s.lifespan,
        limit_concurrency=s.limit_concurrency,
        ws=ws,
        ws_max_size=s.ws_max_size,
        ws_max_queue=s.ws_max_queue,
        ws_ping_interval=ping_interval,
        ws_ping_timeout=ping_timeout,
        ws_per_message_deflate=s.ws_per_message_deflate,
        server_header=s.server_header,
        date_header=s.date_header,
        headers=headers,
        backlog=s.backlog,
    )
    options = Options(
        app=app,
        app_label=label,
        uds=s.uds if s.fd is None else None,  # uvicorn's precedence: fd, then uds, then host:port
        fd=s.fd,
        host=s.host,
        port=s.port,
        workers=workers,
        loop=loop,
        grace=s.grace if s.timeout_graceful_shutdown is None else float(s.timeout_graceful_shutdown),
        access_log=s.access_log_file,
        json_log=s.json_log,
        uvicorn_access=s.access_log,
        ssl_context=tls_context(s),
        quiet=s.quiet,
        log_level=None,  # the `uvicorn.error` logger's level, as logconfig.configure() set it
        limit_max_requests=s.limit_max_requests,
        limit_max_requests_jitter=s.limit_max_requests_jitter,
        backlog=s.backlog,
        server_kwargs=server_kwargs,
    )
    return Plan(options, notes, reload=s.reload)
