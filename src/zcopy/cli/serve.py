"""`zcopy serve [DIR]` / `zcopy serve --app MODULE:ATTR`: parse arguments → zcopy.serve.workers.

The ASGI options are spelled as uvicorn spells them, so `uvicorn app:app --port 8000` becomes
`zcopy serve --app app:app --port 8000` with nothing else changed.
"""

from __future__ import annotations

import argparse
import os

from zcopy.cli import UserError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# Static-only options and their defaults: given with --app they would silently do nothing, so they are refused.
_STATIC_ONLY = {
    "list_dirs": False,
    "dotfiles": False,
    "no_follow_symlinks": False,
    "no_precompressed": False,
    "cache_entries": 256,
    "cache_valid": 1.0,
}
_APP_ONLY = {
    "factory": False,
    "root_path": "",
    "proxy_headers": False,
    "lifespan": "auto",
    "limit_concurrency": None,
    "ws": "auto",
    "ws_max_size": 16 << 20,
    "ws_ping_interval": 20.0,
    "ws_ping_timeout": 20.0,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=None, help="directory to serve (default: current)")
    app = parser.add_argument_group("ASGI application (instead of DIR; uvicorn's spelling)")
    app.add_argument("--app", metavar="MODULE:ATTR", help="serve this ASGI 3 application, e.g. main:app")
    app.add_argument("--app-dir", default=".", help="directory put first on sys.path for --app (default: .)")
    app.add_argument("--factory", action="store_true", help="ATTR is a callable that returns the app")
    app.add_argument("--root-path", default="", help="path prefix the app is mounted under behind a proxy")
    app.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-For/-Proto from allowed IPs")
    app.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="comma-separated proxy addresses/networks to trust, '*' = all "
        "(default: $FORWARDED_ALLOW_IPS or 127.0.0.1)",
    )
    app.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto", help="ASGI lifespan events")
    app.add_argument("--limit-concurrency", type=int, default=None, help="requests in the app at once; then 503")
    app.add_argument(
        "--ws", choices=("auto", "none", "wsproto"), default="auto",
        help="WebSockets: wsproto (pip install 'zcopy[asgi]'); auto = when installed; none = upgrades are plain HTTP",
    )  # fmt: skip
    app.add_argument("--ws-max-size", type=int, default=16 << 20, help="largest WebSocket message (bytes) → 1009")
    app.add_argument("--ws-ping-interval", type=float, default=20.0, help="seconds between our pings (0 = none)")
    app.add_argument("--ws-ping-timeout", type=float, default=20.0, help="seconds to wait for a pong")
    app.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info",
        help="uvicorn's levels: messages below this are not written (warning and above: no start-up line)",
    )  # fmt: skip
    parser.add_argument("--bind", "--host", dest="bind", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 = any free port)")
    parser.add_argument("--uds", metavar="PATH", help="listen on a unix domain socket instead of TCP")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port via SO_REUSEPORT")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="event loop (auto: uvloop when installed)"
    )
    parser.add_argument("--list-dirs", action="store_true", help="serve HTML listings for directories")
    parser.add_argument("--dotfiles", action="store_true", help="serve names starting with '.'")
    parser.add_argument(
        "--no-follow-symlinks",
        action="store_true",
        help="404 for every symlink (default: follow links that stay inside DIR)",
    )
    parser.add_argument("--no-precompressed", action="store_true", help="never serve FILE.br / FILE.gz variants")
    parser.add_argument("--cache-entries", type=int, default=256, help="open-file cache size (0 = off)")
    parser.add_argument("--cache-valid", type=float, default=1.0, help="seconds a cached file is trusted")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="seconds to receive a request head")
    parser.add_argument(
        "--handshake-timeout", type=float, help="TLS: seconds from accept to a finished handshake (default: header)"
    )
    parser.add_argument(
        "--body-timeout", type=float, help="--app: seconds between two pieces of a request body (default: header)"
    )
    parser.add_argument(
        "--keepalive-timeout", "--timeout-keep-alive", dest="keepalive_timeout", type=float, default=30.0,
        help="idle keep-alive seconds",
    )  # fmt: skip
    parser.add_argument("--send-timeout", type=float, default=60.0, help="seconds a reader may stall a send")
    parser.add_argument("--max-connections", type=int, default=10_000, help="per worker; beyond, accept later")
    parser.add_argument("--max-header-bytes", type=int, default=16 << 10, help="request head limit (→ 431)")
    parser.add_argument(
        "--disk-threads", type=int, default=32, metavar="N",
        help="per worker: threads that send body chunks not in the page cache, off the event loop",
    )  # fmt: skip
    parser.add_argument("--grace", type=float, default=10.0, help="SIGTERM: seconds to finish in-flight work")
    parser.add_argument("--access-log", metavar="PATH", help="Common Log Format lines to PATH ('-' = stderr)")
    parser.add_argument("--json-log", action="store_true", help="access log as JSON lines")
    parser.add_argument("--tls-cert", metavar="PEM", help="TLS certificate (bodies are then copied, not sendfile)")
    parser.add_argument("--tls-key", metavar="PEM", help="TLS private key")
    parser.add_argument("--quiet", action="store_true", help="no start-up line")


def _check(args: argparse.Namespace) -> None:
    if args.app is not None:
        if args.dir is not None:
            raise UserError("give a directory or --app, not both")
        for name, default in _STATIC_ONLY.items():
            if getattr(args, name) != default:
                raise UserError(f"--{name.replace('_', '-')} serves a directory; it does nothing with --app")
    else:
        for name, unset in _APP_ONLY.items():
            if getattr(args, name) != unset:
                raise UserError(f"--{name.replace('_', '-')} needs --app MODULE:ATTR")
        args.dir = "." if args.dir is None else args.dir
        if not os.path.isdir(args.dir):
            raise UserError(f"not a directory: {args.dir}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UserError("--tls-cert and --tls-key go together")
    for name in ("workers", "max_connections", "max_header_bytes", "disk_threads"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.ws == "wsproto":
        from zcopy.serve.asgi.websocket import available

        if not available():
            raise UserError("--ws wsproto: wsproto is not installed (pip install 'zcopy[asgi]')")
    if args.ws_max_size < 1 or args.ws_ping_interval < 0 or args.ws_ping_timeout <= 0:
        raise UserError("--ws-max-size and --ws-ping-timeout must be positive, --ws-ping-interval at least 0")
    if args.limit_concurrency is not None and args.limit_concurrency < 1:
        raise UserError("--limit-concurrency must be at least 1")
    if args.root_path and (not args.root_path.startswith("/") or args.root_path.endswith("/")):
        raise UserError(f"--root-path must start with '/' and not end with one: {args.root_path!r}")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port out of range: {args.port}")
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise UserError("--loop uvloop: uvloop is not installed (pip install 'zcopy[fast]')") from None


def _pick(args: argparse.Namespace, *names: str) -> dict[str, object]:
    """The options that zcopy.serve.Server takes under the same names, as its keyword arguments."""
    return {name: getattr(args, name) for name in names}


def run(args: argparse.Namespace) -> int:
    from zcopy.serve.prepare import ConfigError
    from zcopy.serve.workers import Options
    from zcopy.serve.workers import run as run_workers

    _check(args)
    server_kwargs = _pick(
        args, "header_timeout", "handshake_timeout", "keepalive_timeout", "send_timeout", "max_connections",
        "max_header_bytes", "disk_threads", "body_timeout",
    )  # fmt: skip
    app = None
    if args.app is not None:
        from zcopy.serve.asgi.load import AppLoadError, load_app
        from zcopy.serve.asgi.scope import Trusted

        allow = args.forwarded_allow_ips
        if allow is None:
            allow = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
        allow_ips = [a.strip() for a in allow.split(",") if a.strip()]
        try:
            Trusted.parse(allow_ips)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        try:
            app = load_app(args.app, app_dir=args.app_dir, factory=args.factory)  # in the parent, before any fork
        except AppLoadError as exc:
            raise UserError(str(exc)) from None
        server_kwargs.update(
            _pick(args, "root_path", "proxy_headers", "lifespan", "limit_concurrency", "ws", "ws_max_size",
                  "ws_ping_interval", "ws_ping_timeout"),
            forwarded_allow_ips=allow_ips,
        )  # fmt: skip
    else:
        server_kwargs.update(
            _pick(args, "list_dirs", "dotfiles", "cache_entries", "cache_valid"),
            follow_symlinks=not args.no_follow_symlinks,
            precompressed=not args.no_precompressed,
        )
    opts = Options(
        root=args.dir if app is None else None,
        app=app,
        app_label=args.app or "",
        uds=args.uds,
        host=args.bind,
        port=args.port,
        workers=args.workers,
        loop=args.loop,
        grace=args.grace,
        access_log=args.access_log,
        json_log=args.json_log,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        quiet=args.quiet,
        log_level=args.log_level,
        server_kwargs=server_kwargs,
    )
    try:
        return run_workers(opts)
    except ConfigError as exc:  # found before serving or forking; the message names the cause
        raise UserError(str(exc)) from None
    except OSError as exc:
        where = args.uds or f"{args.bind}:{args.port}"
        raise UserError(f"cannot serve on {where}: {exc.strerror or exc}") from None
