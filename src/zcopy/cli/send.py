"""`zcopy send PATH... HOST:PORT`: send files and directory trees to a `zcopy recv` (sendfile bodies)."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from zcopy import jsonout
from zcopy.cli import UserError


def parse_address(text: str, default_host: str | None = None) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, or (with a default host) a bare PORT."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        if default_host is None:
            raise UserError(f"{text!r} is not HOST:PORT")
        host = default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def positive_seconds(text: str) -> float:
    """argparse type of the time bounds (--timeout, --auth-timeout): a number of seconds above 0."""
    try:
        x = float(text)
    except ValueError:
        x = 0.0
    if not x > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return x


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zcopy.routes import ROUTES

    p.add_argument("paths", metavar="PATH", nargs="+",
                   help="files and directories to send, then HOST:PORT where `zcopy recv` listens (not with --relay)")
    p.add_argument("--relay", metavar="HOST:PORT",
                   help="meet the receiver through `zcopy relay` (default: $ZCOPY_RELAY when no HOST:PORT is given): "
                        "prints a short code for `zcopy recv --relay`")
    p.add_argument("--code", help="with --relay: the code to use (e.g. 7-guitarist-revenge) instead of a new one")
    p.add_argument("--token", help="shared secret (default: $ZCOPY_TOKEN); proven by HMAC, never sent")
    p.add_argument("--resume", action="store_true",
                   help="continue from verified partial files; skip files already identical on the receiver")
    p.add_argument("--checksum", choices=("xxh3", "sha256", "none"), default="xxh3",
                   help="per-file checksum (default xxh3-128)")
    p.add_argument("--timeout", type=positive_seconds, default=60.0,
                   help="seconds a network stall may last (default 60)")
    p.add_argument("--route", choices=ROUTES,
                   help="force the body route (default: sendfile, fallbacks shown); readwrite = plain pread + send")
    p.add_argument("--plain", action="store_true",
                   help="unencrypted, zero-copy sendfile bodies (trusted networks); the receiver needs --plain too")
    p.add_argument("--fingerprint", metavar="SHA256:HEX",
                   help="pin the receiver's certificate (as `zcopy recv` prints it): authenticates the receiver even "
                        "without a token")
    p.add_argument("--links", action="store_true",
                   help="send symlinks inside directories as links (default: skipped); the receiver needs --links")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="leave out names matching PATTERN, as rsync does for simple globs (repeatable): `*.tmp` and "
                        "`.git` match a last component anywhere, `a/*.o` a path's end, `/top/x` from the top, "
                        "`cache/` directories only; `*` stays in one component, `**` crosses them")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    from zcopy import RouteUnavailable
    from zcopy.cli.progress import Progress, human_bytes, plural
    from zcopy.transfer import TransferError, UnsafeNameError, send
    from zcopy.transfer.results import session_zero_copy, zero_copy

    relay, paths, address = _where(args)
    for path in paths:
        if not os.path.exists(path):
            raise UserError(f"{path}: no such file or directory")
    if args.code is not None and relay is None:
        raise UserError("--code needs --relay HOST:PORT (or $ZCOPY_RELAY)")
    token = args.token if args.token is not None else os.environ.get("ZCOPY_TOKEN") or None
    if relay is not None:
        if args.token is not None:
            raise UserError("--token is not used with --relay: the code stands in for it")
        token = None
        if args.plain:
            print("zcopy send: warning: --plain through a relay: the relay (and anyone on the way) can read and "
                  "see every byte; the receiver must use --plain too", file=sys.stderr, flush=True)

    def show_code(code: str) -> None:
        assert relay is not None
        where = args.relay or ""
        print(f"zcopy send: code {code}\n  on the receiving machine: zcopy recv DIR "
              f"{'--relay ' + where + ' ' if where else ''}{code}", file=sys.stderr, flush=True)

    # The bar names the mode, so an encrypted (copying) transfer never looks like the zero-copy one.
    bar = Progress("send [plain]" if args.plain else "send [tls1.3]", enabled=False if args.json else None)
    try:
        try:
            result = send(paths, address, relay=relay, code=args.code, on_code=show_code, token=token,
                          resume=args.resume, checksum_name=args.checksum, progress=bar.update,
                          timeout=args.timeout, route=args.route, plain=args.plain, links=args.links,
                          fingerprint=args.fingerprint, exclude=args.exclude)
        finally:
            bar.close()
    except ValueError as exc:  # e.g. --fingerprint with --plain
        raise UserError(str(exc)) from None
    except (UnsafeNameError, RouteUnavailable) as exc:
        raise UserError(str(exc)) from None
    except TransferError as exc:
        _report_error(args, str(exc), exc.code)
        return 1
    except socket.gaierror as exc:  # the receiver's (or relay's) name does not resolve: say which name
        where = relay if relay is not None else address
        assert where is not None
        raise UserError(f"cannot find host {where[0]!r} ({_shown(where)}): {exc.strerror or exc}") from None
    except ConnectionRefusedError:
        if relay is not None:
            raise UserError(f"nothing listens on {_shown(relay)} (is `zcopy relay` running?)") from None
        assert address is not None
        raise UserError(f"nothing listens on {_shown(address)} (is `zcopy recv` running?)") from None
    except OSError as exc:
        _report_error(args, f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 7)
        return 1
    rx = result.receiver
    if args.json:
        summary = result.as_dict()
        summary["routes"] = {"sender": result.routes, "receiver": rx.get("routes", {})}
        # The sender's claim about its own bytes, and the session's, which follows the receiver's report (BYE).
        mine = zero_copy("sender", result.routes, result.encryption)
        summary["zero_copy_sender"] = mine
        summary["zero_copy"] = session_zero_copy(mine, zero_copy("receiver", rx.get("routes"), rx.get("encryption")))
        jsonout.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        for w in result.warnings:
            print(f"zcopy send: warning: {w}", file=sys.stderr)
        rate = result.bytes_sent / result.seconds if result.seconds > 0 else 0.0
        fps = result.files / result.seconds if result.seconds > 0 else 0.0
        line = (f"{plural(result.files, 'file')}, {human_bytes(result.bytes_sent)} sent in {result.seconds:.3f} s "
                f"({human_bytes(rate)}/s, {fps:.0f} files/s); checksum {result.checksum}; "
                f"encryption {result.encryption}")
        if result.skipped or result.bytes_resumed:
            line += f"; {result.skipped} already there, {human_bytes(result.bytes_resumed)} resumed"
        print(line)
        copying = "" if result.encryption == "none" else " (encrypted: copied through user space, not zero-copy)"
        print(f"  routes: sender {_routes(result.routes)}, receiver {_routes(rx.get('routes', {}))}{copying}")
        if result.certificate:
            print(f"  receiver certificate {result.certificate}")
        if relay is None:
            print("  via direct connection")
        elif result.via == "relay":
            print(f"  via relay {_shown(relay)}")
        else:
            print(f"  via direct connection to the address the receiver offered (paired through {_shown(relay)})")
        for f in result.failed:
            print(f"zcopy send: not published: {f['path']}: {f['error']}", file=sys.stderr)
    return 0 if result.ok else 1


def _where(args: argparse.Namespace) -> tuple[tuple[str, int] | None, list[str], tuple[str, int] | None]:
    """(relay, paths, receiver address): --relay takes every positional as a path; otherwise the last one is
    the receiver's HOST:PORT, unless $ZCOPY_RELAY is set and it is not an address (or is an existing path)."""
    if args.relay is not None:
        return parse_address(args.relay), list(args.paths), None
    env = os.environ.get("ZCOPY_RELAY") or None
    last = args.paths[-1]
    if env is not None and (len(args.paths) == 1 or os.path.exists(last) or ":" not in last):
        return parse_address(env), list(args.paths), None
    if len(args.paths) < 2:
        raise UserError("give the receiver's HOST:PORT after the paths, or --relay HOST:PORT (or $ZCOPY_RELAY)")
    return None, list(args.paths[:-1]), parse_address(last)


def _shown(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _routes(routes: object) -> str:
    if not isinstance(routes, dict) or not routes:
        return "none (no body bytes moved)"
    return ", ".join(f"{name} ({n} B)" for name, n in routes.items())


def _report_error(args: argparse.Namespace, message: str, code: int) -> None:
    if args.json:
        jsonout.dump({"error": message, "code": code}, sys.stdout)
        sys.stdout.write("\n")
    print(f"zcopy send: error: {message}", file=sys.stderr)
