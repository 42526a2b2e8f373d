"""`zcopy serve [DIR]`: a zero-copy HTTP/1.1 static file server (parse arguments → zcopy.serve.workers)."""

from __future__ import annotations

import argparse
import os

from zcopy.cli import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=".", help="directory to serve (default: current)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 = any free port)")
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
    parser.add_argument("--keepalive-timeout", type=float, default=30.0, help="idle keep-alive seconds")
    parser.add_argument("--send-timeout", type=float, default=60.0, help="seconds a reader may stall a send")
    parser.add_argument("--max-connections", type=int, default=10_000, help="per worker; beyond, accept later")
    parser.add_argument("--max-header-bytes", type=int, default=16 << 10, help="request head limit (→ 431)")
    parser.add_argument("--grace", type=float, default=10.0, help="SIGTERM: seconds to finish in-flight work")
    parser.add_argument("--access-log", metavar="PATH", help="Common Log Format lines to PATH ('-' = stderr)")
    parser.add_argument("--json-log", action="store_true", help="access log as JSON lines")
    parser.add_argument("--tls-cert", metavar="PEM", help="TLS certificate (bodies are then copied, not sendfile)")
    parser.add_argument("--tls-key", metavar="PEM", help="TLS private key")
    parser.add_argument("--quiet", action="store_true", help="no start-up line")


def run(args: argparse.Namespace) -> int:
    from zcopy.serve.prepare import ConfigError
    from zcopy.serve.workers import Options
    from zcopy.serve.workers import run as run_workers

    if not os.path.isdir(args.dir):
        raise UserError(f"not a directory: {args.dir}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UserError("--tls-cert and --tls-key go together")
    for name in ("workers", "max_connections", "max_header_bytes"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port out of range: {args.port}")
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise UserError("--loop uvloop: uvloop is not installed (pip install 'zcopy[fast]')") from None
    opts = Options(
        root=args.dir,
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
        server_kwargs=dict(
            list_dirs=args.list_dirs,
            dotfiles=args.dotfiles,
            follow_symlinks=not args.no_follow_symlinks,
            precompressed=not args.no_precompressed,
            cache_entries=args.cache_entries,
            cache_valid=args.cache_valid,
            header_timeout=args.header_timeout,
            handshake_timeout=args.handshake_timeout,
            keepalive_timeout=args.keepalive_timeout,
            send_timeout=args.send_timeout,
            max_connections=args.max_connections,
            max_header_bytes=args.max_header_bytes,
        ),
    )
    try:
        return run_workers(opts)
    except ConfigError as exc:  # found before serving or forking; the message names the cause
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot serve on {args.bind}:{args.port}: {exc.strerror or exc}") from None
