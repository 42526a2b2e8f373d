"""`zcopy recv [DIR]`: receive `zcopy send` sessions into DIR (bodies by O_DIRECT, or by splice with --cache;
verified atomic publish)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import secrets
import shlex
import socket
import sys
import threading

from zcopy import jsonout
from zcopy.cli import UserError
from zcopy.cli.send import positive_seconds
from zcopy.transfer.recv_gate import AUTH_TIMEOUT, MAX_HANDSHAKES, MAX_SESSIONS
from zcopy.transfer.results import zero_copy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from zcopy.transfer import Receiver, SessionResult


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return n


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
    p.add_argument("--listen", default=None, metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:9000; port 0 picks a free one); with --relay, also "
                        "listen here and offer it: the sender connects directly if it can, else uses the relay")
    p.add_argument("--once", action="store_true",
                   help="serve one session, then exit (status 1 if it failed); connections that never authenticate "
                        "do not end it")
    p.add_argument("--token", help="require senders to prove this secret (default: $ZCOPY_TOKEN, else a strong one "
                                   "made for this run and printed with the command to send)")
    p.add_argument("--no-token", action="store_true",
                   help="require no token: anyone who can reach the port can write files into DIR")
    p.add_argument("--max-sessions", type=_positive_int, default=MAX_SESSIONS, metavar="N",
                   help=f"authenticated sessions at once (default {MAX_SESSIONS}; more are told the receiver is busy)")
    p.add_argument("--max-handshakes", type=_positive_int, default=MAX_HANDSHAKES, metavar="N",
                   help=f"connections not yet authenticated at once (default {MAX_HANDSHAKES}; more are closed)")
    p.add_argument("--auth-timeout", type=positive_seconds, default=AUTH_TIMEOUT, metavar="S",
                   help=f"seconds a connection has, in all, to finish TLS and the token proofs (default "
                        f"{AUTH_TIMEOUT:g})")
    p.add_argument("--clean-partials", action="store_true",
                   help="first remove the partial files (.NAME.zcopy-part) earlier sessions kept for --resume under "
                        "DIR, saying what each held; partials a running session holds are left")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--timeout", type=positive_seconds, default=60.0,
                   help="seconds a network stall may last (default 60)")
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
    from zcopy.transfer import Receiver, TransferError
    from zcopy.transfer.codes import CodeError, parse

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
    offer = relay is not None and args.listen is not None
    args.listen = args.listen or "127.0.0.1:9000"
    address = parse_address(args.listen, default_host="127.0.0.1")
    if args.no_token and args.token is not None:
        raise UserError("--token and --no-token contradict each other")
    token = args.token if args.token is not None else os.environ.get("ZCOPY_TOKEN") or None
    made = False
    if relay is not None:
        if args.token is not None:
            raise UserError("--token is not used with --relay: the code stands in for it")
        token = None
    elif args.no_token:
        token = None
    elif token is None:
        token = secrets.token_urlsafe(18)  # 144 random bits, typed or pasted in one piece
        made = True
    if args.clean_partials:
        _clean_partials(args.directory)
    try:
        rx = Receiver(args.directory, address, relay=relay, code=args.code if relay else None, offer=offer,
                      token=token,
                      overwrite=args.overwrite, timeout=args.timeout, route=args.route, plain=args.plain,
                      tls_cert=args.tls_cert, tls_key=args.tls_key, links=args.links, cache=args.cache,
                      max_sessions=args.max_sessions, max_handshakes=args.max_handshakes,
                      auth_timeout=args.auth_timeout)
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
            say("warning: --plain through a relay: the relay (and anyone on the way) can read and see every byte; "
                "the sender must use --plain too")
        say(f"waiting for the sender at relay {shown}, writing to {args.directory}"
            + (f"; offering {rx.address[0]}:{rx.address[1]} for a direct connection" if offer else ""))
    else:
        bound, port = rx.address
        host = f"[{bound}]" if ":" in bound else bound
        # Scripts (and the tests) read the chosen port from this line.
        mode = "unencrypted (--plain)" if args.plain else f"TLS 1.3, certificate {rx.fingerprint}"
        say(f"listening on {host}:{port}, writing to {args.directory}" + (" (token required)" if token else "")
            + f"; {mode}")
        say("send with: " + send_command(bound, port, args, rx.fingerprint, token if made else None,
                                          given=token is not None and not made))
        if made:
            say("that token was made for this run: --token or $ZCOPY_TOKEN chooses one, --no-token requires none")
        if token is None and not _loopback(bound):
            say(f"warning: no token and listening on {host}:{port}"
                + (", unencrypted" if args.plain else "")
                + f": anyone who can reach this port can write files into {args.directory}")
    log = SessionLog(args.json, rx)
    with rx:
        try:
            if args.once or relay is not None:
                res = rx.serve_once(log.report)
                log.report(res)
                return 0 if res.ok else 1
            rx.serve_forever(log.report)
        finally:
            log.close()
    return 0


def say(line: str) -> None:
    print(f"zcopy recv: {line}", file=sys.stderr, flush=True)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def send_command(host: str, port: int, args: argparse.Namespace, fingerprint: str, token: str | None, *,
                 given: bool) -> str:
    """The exact `zcopy send` line a sender runs against this receiver (the token in the environment, not on the
    command line, where other users of that machine could read it)."""
    if host in ("0.0.0.0", "::"):  # listening everywhere: name this machine
        host = socket.gethostname()
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    env = f"ZCOPY_TOKEN={shlex.quote(token)} " if token else ("ZCOPY_TOKEN=... " if given else "")
    flags = " --plain" if args.plain else f" --fingerprint {fingerprint}"
    return f"{env}zcopy send PATH... {where}{flags}"


class SessionLog:
    """One line per session (or one JSON object with --json), and on a terminal a progress bar of the sessions
    running, redrawn by a thread of its own. Sessions end in their own threads, so lines are written under a
    lock."""

    def __init__(self, json: bool, rx: Receiver) -> None:
        from zcopy.cli.progress import Progress

        self.json = json
        self.rx = rx
        self.lock = threading.Lock()
        self.bar: Progress | None = None
        self.stop = threading.Event()
        self.ticker: threading.Thread | None = None
        if not json and sys.stderr.isatty():
            self.ticker = threading.Thread(target=self._tick, daemon=True, name="zcopy-recv progress")
            self.ticker.start()

    def _tick(self) -> None:
        from zcopy.cli.progress import Progress

        while not self.stop.wait(0.1):
            live = self.rx.sessions()
            with self.lock:
                if not live:
                    continue
                if self.bar is None:
                    label = f"recv {live[0].peer}" if len(live) == 1 else f"recv ({len(live)} sessions)"
                    self.bar = Progress(label, enabled=True)
                self.bar.update(sum(r.bytes for r in live), max(1, sum(r.bytes_total for r in live)))

    def report(self, res: SessionResult) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            if self.json:
                summary = res.as_dict()
                summary["route"] = res.routes
                summary["zero_copy"] = zero_copy("receiver", res.routes, res.encryption)  # None: no body byte moved
                print(jsonout.dumps(summary), flush=True)
            elif res.error:
                say(f"session from {res.peer} failed: {res.error}")
            else:
                say(summary_line(res))
            for f in res.failed:
                say(f"not published: {f['name']}: {f['error']}")

    def close(self) -> None:
        self.stop.set()
        if self.ticker is not None:
            self.ticker.join(1)
        with self.lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None


def summary_line(res: SessionResult) -> str:
    """A finished session for people: counts with their nouns, sizes in binary units, routes by name."""
    from zcopy.cli.progress import human_bytes, plural

    rate = f" ({human_bytes(res.bytes / res.seconds)}/s)" if res.seconds > 0 and res.bytes else ""
    parts = [f"{res.peer}: {plural(res.files, 'file')}, {human_bytes(res.bytes)} in {res.seconds:.3f} s{rate}"]
    if res.skipped:
        parts.append(f"{res.skipped} already there")
    routes = ", ".join(f"{name} {human_bytes(n)}" for name, n in res.routes.items()) or "none (no body bytes)"
    parts.append(f"routes: {routes}")
    parts.append(f"checksum {res.checksum}, encryption {res.encryption}, via {res.via}")
    return "; ".join(parts)


def _clean_partials(directory: str) -> None:
    from zcopy.cli.progress import human_bytes, plural
    from zcopy.transfer import partials

    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        removed, busy = partials.clean(fd)
    finally:
        os.close(fd)
    for part in removed:
        say(f"removed partial {os.fsdecode(part.path)} ({human_bytes(part.size)})")
    for part in busy:
        say(f"kept partial {os.fsdecode(part.path)}: a running session holds it")
    say(f"--clean-partials: {plural(len(removed), 'partial file')} removed, "
        f"{human_bytes(sum(p.size for p in removed))} given back")
