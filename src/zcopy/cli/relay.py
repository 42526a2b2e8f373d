"""`zcopy relay --listen HOST:PORT`: pair `zcopy send --relay` and `zcopy recv --relay` by nameplate and splice
their bytes both ways (never decrypted, never in user space). One log line per session on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from zcopy.cli import UserError


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
        return value

    return parse


def _bytes(text: str) -> int:
    from zcopy.lab.stats import parse_size

    if text.strip() == "0":
        return 0
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zcopy.relay import Limits

    d = Limits()
    p.add_argument("--listen", default="0.0.0.0:9010", metavar="HOST:PORT",
                   help="address to listen on (default 0.0.0.0:9010; port 0 picks a free one)")
    p.add_argument("--max-sessions", type=_positive(int), default=d.max_sessions, metavar="N",
                   help=f"nameplates waiting or paired at once (default {d.max_sessions})")
    p.add_argument("--max-per-address", type=_positive(int), default=d.max_per_address, metavar="N",
                   help=f"connections from one client address at once (default {d.max_per_address})")
    p.add_argument("--pairing-timeout", type=_positive(float), default=d.pairing_timeout, metavar="SECONDS",
                   help=f"how long a client waits for its peer (default {d.pairing_timeout:g})")
    p.add_argument("--idle-timeout", type=_positive(float), default=d.idle_timeout, metavar="SECONDS",
                   help=f"end a paired session that moves no byte this long (default {d.idle_timeout:g})")
    p.add_argument("--max-bytes", type=_bytes, default=d.max_bytes, metavar="SIZE",
                   help="end a session after this many bytes, both ways together (e.g. 10G; default 0: no limit)")
    p.add_argument("--grace", type=_positive(float), default=d.grace, metavar="SECONDS",
                   help=f"on SIGTERM/SIGINT, time paired sessions get to finish (default {d.grace:g}; "
                        "a second signal stops at once)")
    p.add_argument("--json", action="store_true", help="log one JSON object per line instead of text")


def run(args: argparse.Namespace) -> int:
    from zcopy.cli.send import parse_address
    from zcopy.relay import Limits, Relay, format_line

    address = parse_address(args.listen, default_host="0.0.0.0")
    limits = Limits(max_sessions=args.max_sessions, max_per_address=args.max_per_address,
                    pairing_timeout=args.pairing_timeout, idle_timeout=args.idle_timeout, max_bytes=args.max_bytes,
                    grace=args.grace)

    def log(line: dict[str, object]) -> None:
        text = json.dumps(line) if args.json else format_line(line)
        print(text, file=sys.stderr, flush=True)

    try:
        relay = Relay(address, limits, log)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    relay.install_signal_handlers()
    relay.serve_forever()
    return 0
