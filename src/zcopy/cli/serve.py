"""`zcopy serve [DIR]` / `zcopy serve --app MODULE:ATTR`: parse arguments → zcopy.serve.workers.

Every option of `uvicorn --help` is accepted under its name and with its meaning (serve/settings.py maps them;
tests/serve/asgi/test_uvicorn_options.py checks the list against the installed uvicorn), so
`uvicorn main:app --port 8000 --proxy-headers` becomes `zcopy serve --app main:app --port 8000 --proxy-headers`
(or `zcopy serve main:app ...`). An option that cannot apply is accepted and logged once, never refused.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
from typing import Any

from zcopy.cli import UserError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
_APP_SPEC = re.compile(r"^[\w.]+:[\w.]+$")
# Static-only options and their defaults: given with --app they would silently do nothing, so they are refused.
_STATIC_ONLY = {
    "list_dirs": False,
    "dotfiles": False,
    "no_follow_symlinks": False,
    "no_precompressed": False,
    "cache_entries": 256,
    "cache_valid": 1.0,
}
# uvicorn's options that only mean something for an application (None = not given).
_APP_ONLY = (
    "factory", "root_path", "proxy_headers", "forwarded_allow_ips", "lifespan", "limit_concurrency", "ws",
    "ws_max_size", "ws_max_queue", "ws_ping_interval", "ws_ping_timeout", "ws_per_message_deflate", "interface",
    "reload", "reload_dirs", "reload_includes", "reload_excludes", "reload_delay", "env_file", "http", "http2",
    "server_header", "date_header", "headers", "limit_max_requests", "limit_max_requests_jitter",
    "timeout_graceful_shutdown", "timeout_worker_healthcheck", "h11_max_incomplete_event_size",
    "reset_contextvars", "use_colors",
)  # fmt: skip
# Given on the command line → passed to Settings under the same name (the rest are zcopy's own).
_UVICORN = (
    *_APP_ONLY, "host", "port", "uds", "fd", "loop", "workers", "log_config", "log_level", "access_log",
    "backlog", "timeout_keep_alive", "ssl_keyfile", "ssl_certfile", "ssl_keyfile_password", "ssl_version",
    "ssl_cert_reqs", "ssl_ca_certs", "ssl_ciphers", "app_dir",
)  # fmt: skip


def _bool(text: str) -> bool:
    """click's BOOLEAN, as uvicorn's --ws-per-message-deflate takes it."""
    low = text.strip().lower()
    if low in ("1", "true", "t", "yes", "y", "on"):
        return True
    if low in ("0", "false", "f", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a valid boolean")


def _nonneg(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text} is not >= 0")
    return n


class _Version(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version (as uvicorn --version) and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from zcopy import __version__

        impl, ver, system = platform.python_implementation(), platform.python_version(), platform.system()
        print(f"Running zcopy {__version__} with {impl} {ver} on {system}")
        parser.exit()


def _from_environment(parser: argparse.ArgumentParser, actions: list[argparse.Action]) -> None:
    """uvicorn takes every option from ``UVICORN_<NAME>`` too (click's auto_envvar_prefix, NAME its parameter's
    name: UVICORN_PORT, UVICORN_RELOAD_DIRS, UVICORN_HEADERS...); so does zcopy, and the command line wins."""
    for action in actions:
        if not action.option_strings or action.dest == "version":
            continue
        var = f"UVICORN_{action.dest.upper()}"
        text = os.environ.get(var)
        if text is None:
            continue
        try:
            if action.nargs == 0:  # a flag, or --x/--no-x
                value: Any = _bool(text)
            elif isinstance(action, argparse._AppendAction):
                value = [action.type(v) if action.type else v for v in text.split()]  # type: ignore[operator]
            else:
                value = action.type(text) if action.type else text  # type: ignore[operator]
            if action.choices is not None and value not in action.choices:
                raise ValueError(f"not one of {', '.join(map(str, action.choices))}")
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"{var}={text!r}: {exc}")
        action.default = value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", nargs="?", default=None, help="directory to serve (default: current), or MODULE:ATTR as --app"
    )
    u = parser.add_argument_group("uvicorn's options (same names, values and meaning; docs/serve.md#uvicorn)")
    u.add_argument("--app", metavar="MODULE:ATTR", help="serve this ASGI application, e.g. main:app")
    u.add_argument("--host", "--bind", dest="host", default=None, help="address to bind (default 127.0.0.1)")
    u.add_argument("--port", type=int, default=None, help="TCP port (default 8000; 0 = any free port)")
    u.add_argument("--uds", metavar="PATH", help="listen on a unix domain socket instead of TCP")
    u.add_argument("--fd", type=int, default=None, help="serve on this inherited, bound socket descriptor")
    u.add_argument("--reload", action="store_true", default=None, help="restart on code changes (watchfiles)")
    u.add_argument("--reload-dir", dest="reload_dirs", action="append", metavar="PATH", help="watch this directory")
    u.add_argument("--reload-include", dest="reload_includes", action="append", metavar="GLOB", help="watch these")
    u.add_argument("--reload-exclude", dest="reload_excludes", action="append", metavar="GLOB", help="ignore these")
    u.add_argument("--reload-delay", type=float, default=None, help="seconds between checks (default 0.25)")
    u.add_argument(
        "--workers", type=int, default=None,
        help="processes sharing the port via SO_REUSEPORT (default $WEB_CONCURRENCY or 1)",
    )  # fmt: skip
    u.add_argument("--loop", default=None, help="auto|asyncio|uvloop (auto: uvloop when installed)")
    u.add_argument("--http", default=None, help="auto|h11|httptools: zcopy always parses with httptools (logged)")
    u.add_argument("--http2", action="store_true", default=None, help="accepted; HTTP/1.1 is served (logged)")
    u.add_argument("--ws", default=None, help="auto|none|websockets|websockets-sansio|wsproto: all served by wsproto")
    u.add_argument("--ws-max-size", type=int, default=None, help="largest WebSocket message (bytes) → 1009")
    u.add_argument("--ws-max-queue", type=int, default=None, help="WebSocket messages queued before reading pauses")
    u.add_argument("--ws-ping-interval", type=float, default=None, help="seconds between our pings (0 = none)")
    u.add_argument("--ws-ping-timeout", type=float, default=None, help="seconds to wait for a pong")
    u.add_argument(
        "--ws-per-message-deflate", type=_bool, default=None, metavar="BOOLEAN",
        help="permessage-deflate when the client offers it (default true)",
    )  # fmt: skip
    u.add_argument("--lifespan", choices=("auto", "on", "off"), default=None, help="ASGI lifespan events")
    u.add_argument(
        "--interface", choices=("auto", "asgi3", "asgi2", "wsgi"), default=None,
        help="application interface (auto: ASGI 3 or 2 by its shape; wsgi: run in threads)",
    )  # fmt: skip
    u.add_argument("--env-file", metavar="PATH", help="load environment variables (python-dotenv)")
    u.add_argument("--log-config", metavar="PATH", help="logging config: .json, .yaml or .ini (as uvicorn's)")
    u.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower, default=None, help="default info")
    u.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=None,
        help="uvicorn's access line per request (default: on with --app, off for a directory)",
    )  # fmt: skip
    u.add_argument("--use-colors", action=argparse.BooleanOptionalAction, default=None, help="coloured levels")
    u.add_argument(
        "--proxy-headers", action=argparse.BooleanOptionalAction, default=None,
        help="trust X-Forwarded-For/-Proto from --forwarded-allow-ips (default: on)",
    )  # fmt: skip
    u.add_argument("--server-header", action=argparse.BooleanOptionalAction, default=None, help="Server: zcopy")
    u.add_argument("--date-header", action=argparse.BooleanOptionalAction, default=None, help="Date header")
    u.add_argument(
        "--forwarded-allow-ips", default=None,
        help="comma-separated proxy addresses/networks to trust, '*' = all "
        "(default: $FORWARDED_ALLOW_IPS or 127.0.0.1,::1)",
    )
    u.add_argument("--root-path", default=None, help="path prefix the app is mounted under behind a proxy")
    u.add_argument("--limit-concurrency", type=int, default=None, help="requests in the app at once; then 503")
    u.add_argument("--backlog", type=int, default=None, help="listen(2) queue (default 2048)")
    u.add_argument("--limit-max-requests", type=int, default=None, help="a worker stops after this many requests")
    u.add_argument("--limit-max-requests-jitter", type=_nonneg, default=None, help="random extra 0..N requests")
    u.add_argument(
        "--timeout-keep-alive", "--keepalive-timeout", dest="timeout_keep_alive", type=float, default=None,
        help="idle keep-alive seconds (default 5 with --app, 30 for a directory)",
    )  # fmt: skip
    u.add_argument(
        "--timeout-graceful-shutdown", type=float, default=None, help="SIGTERM: seconds for in-flight work (--grace)"
    )
    u.add_argument("--timeout-worker-healthcheck", type=int, default=None, help="accepted (logged: no pings here)")
    u.add_argument("--ssl-keyfile", "--tls-key", dest="ssl_keyfile", metavar="PEM", help="TLS private key")
    u.add_argument(
        "--ssl-certfile", "--tls-cert", dest="ssl_certfile", metavar="PEM",
        help="TLS certificate (bodies are then copied, not sendfile)",
    )  # fmt: skip
    u.add_argument("--ssl-keyfile-password", default=None, help="password of the key file")
    u.add_argument("--ssl-version", type=int, default=None, help="ssl module protocol number (default 17)")
    u.add_argument("--ssl-cert-reqs", type=int, default=None, help="client certs: 0 none, 1 optional, 2 required")
    u.add_argument("--ssl-ca-certs", metavar="PEM", default=None, help="CA certificates for client certificates")
    u.add_argument("--ssl-ciphers", default=None, help="OpenSSL cipher list")
    u.add_argument(
        "--header", dest="headers", action="append", metavar="NAME:VALUE", help="a response header (repeatable)"
    )
    u.add_argument("--version", action=_Version)
    u.add_argument("--app-dir", default=None, help="directory put first on sys.path for --app (default: .)")
    u.add_argument("--h11-max-incomplete-event-size", type=int, default=None, help="largest request head (bytes)")
    u.add_argument("--reset-contextvars", action="store_true", default=None, help="fresh contextvars per request")
    u.add_argument("--factory", action="store_true", default=None, help="ATTR is a callable that returns the app")
    _from_environment(parser, u._group_actions)
    z = parser.add_argument_group("zcopy's own")
    z.add_argument("--list-dirs", action="store_true", help="serve HTML listings for directories")
    z.add_argument("--dotfiles", action="store_true", help="serve names starting with '.'")
    z.add_argument(
        "--no-follow-symlinks",
        action="store_true",
        help="404 for every symlink (default: follow links that stay inside DIR)",
    )
    z.add_argument("--no-precompressed", action="store_true", help="never serve FILE.br / FILE.gz variants")
    z.add_argument("--cache-entries", type=int, default=256, help="open-file cache size (0 = off)")
    z.add_argument("--cache-valid", type=float, default=1.0, help="seconds a cached file is trusted")
    z.add_argument("--header-timeout", type=float, default=10.0, help="seconds to receive a request head")
    z.add_argument(
        "--handshake-timeout", type=float, help="TLS: seconds from accept to a finished handshake (default: header)"
    )
    z.add_argument(
        "--body-timeout", type=float, help="--app: seconds between two pieces of a request body (default: header)"
    )
    z.add_argument("--send-timeout", type=float, default=60.0, help="seconds a reader may stall a send")
    z.add_argument("--max-connections", type=int, default=10_000, help="per worker; beyond, accept later")
    z.add_argument("--max-header-bytes", type=int, default=16 << 10, help="request head limit (→ 431)")
    z.add_argument(
        "--disk-threads", type=int, default=32, metavar="N",
        help="per worker: threads that send body chunks not in the page cache, off the event loop",
    )  # fmt: skip
    z.add_argument("--grace", type=float, default=10.0, help="SIGTERM: seconds to finish in-flight work")
    z.add_argument(
        "--access-log-file", metavar="PATH", help="Common Log Format lines to PATH ('-' = stderr), reopened on SIGHUP"
    )
    z.add_argument("--json-log", action="store_true", help="--access-log-file as JSON lines (with the route)")
    z.add_argument("--quiet", action="store_true", help="no start-up line")


def _check(args: argparse.Namespace) -> None:
    if args.app is None and args.dir is not None and not os.path.isdir(args.dir) and _APP_SPEC.match(args.dir):
        args.app, args.dir = args.dir, None  # `zcopy serve main:app`, uvicorn's positional APP
    if args.app is not None:
        if args.dir is not None:
            raise UserError("give a directory or --app, not both")
        for name, default in _STATIC_ONLY.items():
            if getattr(args, name) != default:
                raise UserError(f"--{name.replace('_', '-')} serves a directory; it does nothing with --app")
    else:
        for name in _APP_ONLY:
            if getattr(args, name) is not None:
                option = {"headers": "header", "reload_dirs": "reload-dir", "reload_includes": "reload-include",
                          "reload_excludes": "reload-exclude"}.get(name, name.replace("_", "-"))  # fmt: skip
                raise UserError(f"--{option} needs --app MODULE:ATTR")
        args.dir = "." if args.dir is None else args.dir
        if not os.path.isdir(args.dir):
            raise UserError(f"not a directory: {args.dir}")
    for name in ("workers", "max_connections", "max_header_bytes", "disk_threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("header_timeout", "handshake_timeout", "body_timeout", "send_timeout"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UserError(f"--{name.replace('_', '-')} must be more than 0 seconds")
    for name in ("grace", "cache_valid"):
        if not getattr(args, name) >= 0:
            raise UserError(f"--{name.replace('_', '-')} must be at least 0 seconds")
    if args.cache_entries < 0:
        raise UserError("--cache-entries must be at least 0")
    if args.ws == "wsproto":
        from zcopy.serve.asgi.websocket import available

        if not available():
            raise UserError("--ws wsproto: wsproto is not installed (pip install 'zcopy[asgi]')")
    if min(args.ws_max_size or 1, args.ws_max_queue or 1) < 1:
        raise UserError("--ws-max-size and --ws-max-queue must be positive")
    if (args.ws_ping_interval or 0) < 0 or (args.ws_ping_timeout is not None and args.ws_ping_timeout <= 0):
        raise UserError("--ws-ping-timeout must be positive, --ws-ping-interval at least 0")
    if args.limit_concurrency is not None and args.limit_concurrency < 1:
        raise UserError("--limit-concurrency must be at least 1")
    if args.limit_max_requests is not None and args.limit_max_requests < 1:
        raise UserError("--limit-max-requests must be at least 1")
    if args.root_path and (not args.root_path.startswith("/") or args.root_path.endswith("/")):
        raise UserError(f"--root-path must start with '/' and not end with one: {args.root_path!r}")
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UserError(f"--port out of range: {args.port}")
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise UserError("--loop uvloop: uvloop is not installed (pip install 'zcopy[fast]')") from None


def settings_of(args: argparse.Namespace) -> Any:
    """The uvicorn settings the command line gave (only those: the rest keep uvicorn's defaults)."""
    from zcopy.serve.settings import Settings, SettingsError, parse_header

    given = {name: getattr(args, name) for name in _UVICORN if getattr(args, name) is not None}
    if "headers" in given:
        try:
            given["headers"] = [parse_header(h) for h in given["headers"]]
        except SettingsError as exc:
            raise UserError(str(exc)) from None
    server_kwargs = {
        name: getattr(args, name)
        for name in (
            "header_timeout", "handshake_timeout", "body_timeout", "send_timeout", "max_connections",
            "max_header_bytes", "disk_threads",
        )
    }
    return Settings(
        **given,
        app=args.app,
        grace=args.grace,
        access_log_file=args.access_log_file,
        json_log=args.json_log,
        quiet=args.quiet,
        explicit=frozenset(given),
        server_kwargs=server_kwargs,
    )


def run(args: argparse.Namespace) -> int:
    from zcopy.serve.logconfig import ConfigError as LogConfigError
    from zcopy.serve.prepare import ConfigError
    from zcopy.serve.settings import SettingsError

    _check(args)
    settings = settings_of(args)
    try:
        if args.app is None:
            from zcopy.serve.startup import static_plan

            plan = static_plan(settings, args)
        else:
            from zcopy.serve.startup import app_plan

            plan = app_plan(settings)
    except (SettingsError, LogConfigError) as exc:
        raise UserError(str(exc)) from None
    from zcopy.serve.startup import start

    try:
        return start(plan, settings)
    except (ConfigError, SettingsError) as exc:  # found before serving or forking; the message names the cause
        raise UserError(str(exc)) from None
    except OSError as exc:
        where = args.uds or f"{settings.host}:{settings.port}"
        raise UserError(f"cannot serve on {where}: {exc.strerror or exc}") from None

