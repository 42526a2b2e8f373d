"""`zcopy recv [DIR]`: receive `zcopy send` sessions into DIR (bodies by O_DIRECT, or by splice with --cache;
verified atomic publish)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from zcopy import jsonout
from zcopy.cli import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zcopy.routes import ROUTES

    p.add_argument("directory", metavar="DIR", nargs="?", default=".", help="target directory (default: .)")
    p.add_argument("code", metavar="CODE", nargs="?",
                   help="with --relay: the code `zcopy send --relay` printed (e.g. 7-guitarist-revenge)")
    # nargs="+": the CODE may follow it (`zcopy recv DIR --relay HOST:PORT CODE`), which argparse would not
    # otherwise take as the second positional once an option came between.
    p.add_argument("--relay", metavar="HOST:PORT", nargs="+",
                   help="meet the sender through `zcopy relay` instead of listening (default: $ZCOPY_RELAY when a "
                        "CODE is given); one session, then exit")
    p.add_argument("--listen", default="127.0.0.1:9000", metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:9000; port 0 picks a free one)")
    p.add_argument("--once", action="store_true", help="serve one session, then exit (status 1 if it failed)")
    p.add_argument("--token", help="require senders to prove this secret (default: $ZCOPY_TOKEN)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a network stall may last (default 60)")
    p.add_argument("--route", choices=ROUTES,
                   help="force the body route (default: direct where the file system can, else splice with --plain, "
                        "else readwrite; fallbacks shown); readwrite = plain recv_into + write")
    p.add_argument("--plain", action="store_true",
                   help="no encryption, for trusted networks; the sender needs --plain too (bodies land by O_DIRECT: "
                        "one CPU copy into the receive buffer; with --cache by splice: none into user space)")
    p.add_argument("--tls-cert", metavar="PEM",
                   help="certificate (and key, if in the same file) to present (default: a key pair made on first "
                        "use in $XDG_CONFIG_HOME/zcopy, 0600)")
    p.add_argument("--tls-key", metavar="PEM", help="private key for --tls-cert, if it is a separate file")
    p.add_argument("--links", action="store_true", help="accept symlinks sent with `zcopy send --links`")
    p.add_argument("--cache", action="store_true",
                   help="land large files through the page cache (splice with --plain: no copy into user space, one "
                        "CPU copy in the kernel) instead of by O_DIRECT")
    p.add_argument("--json", action="store_true", help="print one JSON line per session on stdout")


def run(args: argparse.Namespace) -> int:
    from zcopy import RouteUnavailable
    from zcopy.cli.send import parse_address
    from zcopy.transfer import Receiver, SessionResult, TransferError
    from zcopy.transfer.codes import CodeError, parse
    from zcopy.transfer.results import zero_copy

    if args.relay is not None:
        if len(args.relay) > 2 or (len(args.relay) == 2 and args.code is not None):
            raise UserError("--relay takes HOST:PORT, then the one CODE")
        if len(args.relay) == 2:
            args.code = args.relay[1]
        args.relay = args.relay[0]
    if args.code is None and args.directory != "." and not os.path.isdir(args.directory):
        with contextlib.suppress(CodeError):  # `zcopy recv --relay H:P CODE`: the code, into the current directory
            parse(args.directory)
            args.directory, args.code = ".", args.directory
    if not os.path.isdir(args.directory):
        raise UserError(f"{args.directory}: not an existing directory")
    relay_text = args.relay if args.relay is not None else (os.environ.get("ZCOPY_RELAY") or None)
    if args.code is not None and relay_text is None:
        raise UserError("a CODE needs --relay HOST:PORT (or $ZCOPY_RELAY)")
    if args.relay is not None and args.code is None:
        raise UserError("--relay needs the CODE `zcopy send --relay` printed")
    relay = parse_address(relay_text) if args.code is not None and relay_text is not None else None
    if args.code is not None:
        try:
            parse(args.code)
        except CodeError as exc:
            raise UserError(str(exc)) from None
    address = parse_address(args.listen, default_host="127.0.0.1")
    token = args.token if args.token is not None else os.environ.get("ZCOPY_TOKEN") or None
    if relay is not None:
        if args.token is not None:
            raise UserError("--token is not used with --relay: the code stands in for it")
        token = None
    try:
        rx = Receiver(args.directory, address, relay=relay, code=args.code if relay else None, token=token,
                      overwrite=args.overwrite, timeout=args.timeout, route=args.route, plain=args.plain,
                      tls_cert=args.tls_cert, tls_key=args.tls_key, links=args.links, cache=args.cache)
    except TransferError as exc:  # the TLS key pair cannot be made or loaded
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    except RouteUnavailable as exc:
        raise UserError(str(exc)) from None
    if relay is not None:
        host, port = relay
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if args.plain:
            print("zcopy recv: warning: --plain through a relay: the relay (and anyone on the way) can read and "
                  "see every byte; the sender must use --plain too", file=sys.stderr, flush=True)
        print(f"zcopy recv: waiting for the sender at relay {shown}, writing to {args.directory}",
              file=sys.stderr, flush=True)
    else:
        host, port = rx.address
        host = f"[{host}]" if ":" in host else host
        # Scripts (and the tests) read the chosen port from this line.
        mode = "unencrypted (--plain)" if args.plain else f"TLS 1.3, certificate {rx.fingerprint}"
        print(f"zcopy recv: listening on {host}:{port}, writing to {args.directory}"
              + (" (token required)" if token else "") + f"; {mode}", file=sys.stderr, flush=True)

    def report(res: SessionResult) -> None:
        if args.json:
            summary = res.as_dict()
            summary["route"] = res.routes
            summary["zero_copy"] = zero_copy("receiver", res.routes, res.encryption)  # None: no body byte moved
            print(jsonout.dumps(summary), flush=True)
        elif res.error:
            print(f"zcopy recv: session from {res.peer} failed: {res.error}", file=sys.stderr, flush=True)
        else:
            print(f"zcopy recv: {res.peer}: {res.files} files, {res.bytes} bytes in {res.seconds:.3f} s, "
                  f"routes {res.routes or 'none'}, checksum {res.checksum}, encryption {res.encryption}, "
                  f"via {res.via}",
                  file=sys.stderr, flush=True)
        for f in res.failed:
            print(f"zcopy recv: not published: {f['name']}: {f['error']}", file=sys.stderr, flush=True)

    with rx:
        if args.once or relay is not None:
            res = rx.serve_once()
            report(res)
            return 0 if res.ok else 1
        rx.serve_forever(report)
    return 0
