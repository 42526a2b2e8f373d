"""Alternating runs of a few servers on one route each: the probe behind the 'where the time goes' numbers.

All servers run at once (pinned to CPU0, wrk on CPU1); every round takes them back to back in a shuffled order,
so a slow spell of this VM hits all of them. Prints, per server, CPU per request (or per GB) split into user and
system time, and the per-round ratios asked for with --ratio A/B. Not part of `make bench`: the full
comparisons are bench/serve.py and bench/asgi.py; this answers one question at a time.

Each SPEC is NAME=PATH=COMMAND. In COMMAND, {port} is the server's port and {tmp} a directory holding bench/asgi.py's
app as benchapp.py and root/ with small.bin (4 KiB) and big.bin (256 MiB). Peers come from .bench-asgi-venv,
installed by bench/asgi.py's peer_venv().
Usage: .venv/bin/python bench/alternate.py [--rounds N] [--seconds S] [--conns C] [--per-gb] SPEC...
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import sys
from collections.abc import Sequence

from asgi import APP, peer_venv  # bench/ is sys.path[0] when run as a script
from serve import CLK_TCK, all_running, proc_tree, serve_tree, start_bench, wrk


def ticks(pid: int) -> tuple[int, int]:
    """(user, system) clock ticks of ``pid`` and its descendants."""
    user = system = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--per-gb", action="store_true", help="CPU seconds per GB read by wrk instead of µs per request")
    ap.add_argument("--ratio", action="append", default=[], metavar="A/B", help="per-round ratio to print (repeatable)")
    ap.add_argument("spec", nargs="+", help="NAME=PATH=COMMAND")
    args = ap.parse_args(argv)
    specs = [s.split("=", 2) for s in args.spec]
    if any(len(s) != 3 for s in specs):
        ap.error("each SPEC is NAME=PATH=COMMAND")
    if start_bench("bench/alternate") is None:
        return 1
    if any(".bench-asgi-venv" in cmd for _, _, cmd in specs):
        peer_venv()
    tmp, _root = serve_tree("zcopy-bench-alternate-")
    with open(os.path.join(tmp, "benchapp.py"), "w") as f:
        f.write(APP)
    paths = {name: path for name, path, _ in specs}
    scale, unit = (1.0, "s/GB") if args.per_gb else (1e6, "µs/req")
    # per round: each server's (total, user, system, rate)
    rounds: list[dict[str, tuple[float, float, float, float]]] = []
    servers = {name: (name, shlex.split(cmd)) for name, _, cmd in specs}
    with all_running(servers, tmp, tree=True) as running:
        for name, c in running.items():
            wrk(c.port, paths[name], args.conns, 1.0)  # warm-up
        rng = random.Random(1)
        for _ in range(args.rounds):
            order = list(paths)
            rng.shuffle(order)
            got = {}
            rounds.append(got)
            for name in order:
                c = running[name]
                u0, s0 = ticks(c.pid)
                reqs, wall, nbytes, _errors = wrk(c.port, paths[name], args.conns, args.seconds)
                u1, s1 = ticks(c.pid)
                per = nbytes / 1e9 if args.per_gb else reqs
                if per:
                    user, system = (u1 - u0) / CLK_TCK / per * scale, (s1 - s0) / CLK_TCK / per * scale
                    got[name] = (user + system, user, system, per / wall)
    print(f"{args.rounds} alternating rounds × {args.seconds:g} s, {args.conns} connections; medians (min–max)")
    for name in paths:
        rows = [r[name] for r in rounds if name in r]
        if not rows:
            print(f"{name:14s} no run completed")
            continue
        total = [r[0] for r in rows]
        user, system = statistics.median(r[1] for r in rows), statistics.median(r[2] for r in rows)
        line = (f"{name:14s} {statistics.median(total):8.3f} {unit} ({min(total):.3f}–{max(total):.3f})  "
                f"user {user:.3f}  system {system:.3f}  "
                f"{statistics.median(r[3] for r in rows):.2f} {'GB' if args.per_gb else 'req'}/s")  # fmt: skip
        print(line)
    for pair in args.ratio:
        a, _, b = pair.partition("/")
        ratios = [r[a][0] / r[b][0] for r in rounds if a in r and b in r]
        if ratios:
            print(f"{a} / {b}, per round: {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
