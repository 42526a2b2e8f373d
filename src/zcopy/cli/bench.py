"""`zcopy bench`: scenarios × sizes × routes, repeated; median tables, JSON, and a PNG/HTML report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from zcopy import jsonout
from zcopy.cli import UserError

SCENARIO_IDS = ("file-socket", "socket-file", "file-file")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zcopy.routes import ROUTES

    p.add_argument("--scenario", action="append", choices=SCENARIO_IDS, help="run only these (repeatable)")
    p.add_argument("--route", action="append", choices=ROUTES, help="run only these routes (repeatable)")
    p.add_argument("--min-size", default="4K", help="smallest transfer (default 4K)")
    p.add_argument("--max-size", default="1G", help="largest transfer (default 1G)")
    p.add_argument("--factor", type=int, default=4, help="size step, log-spaced (default ×4)")
    p.add_argument("--repeats", type=int, default=3, help="samples per cell; the median is reported (default 3)")
    p.add_argument("--sample-bytes", default="64M", help="bytes moved per sample for small sizes (default 64M)")
    p.add_argument("--quick", action="store_true", help="4K…16M, 2 repeats, 8M per sample: proves it works")
    p.add_argument("--dir", metavar="DIR", help="where the temp files go (default: system temp dir)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' = stdout, no table)")
    p.add_argument("--report", metavar="DIR", help="write PNG plots and index.html (needs matplotlib)")
    p.add_argument("--wide", action="store_true", help="full tables (MiB/s and CPU s/GiB with min–max) whatever "
                   "the terminal's width (default: median MiB/s in what fits, 80 columns when piped)")  # fmt: skip
    p.add_argument("--from", dest="source", metavar="JSON", help="do not measure: render tables/report from a "
                   "bench JSON written earlier (e.g. DIR/bench.json)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from zcopy.cli.progress import Progress
    from zcopy.lab import render
    from zcopy.lab.bench import BenchOptions, run_bench
    from zcopy.lab.stats import parse_size

    try:
        lo, hi = parse_size(args.min_size), parse_size(args.max_size)
        sample = parse_size(args.sample_bytes)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.quick:
        hi, sample, repeats = min(hi, 16 << 20), 8 << 20, 2
    else:
        repeats = args.repeats
    if lo > hi:
        raise UserError(f"--min-size {args.min_size} is larger than --max-size {args.max_size}")
    if args.factor < 2 or repeats < 1:
        raise UserError("--factor must be >= 2 and --repeats >= 1")
    if args.report:
        from zcopy.lab.report import have_matplotlib

        if not have_matplotlib():
            raise UserError("--report needs matplotlib: pip install 'zcopy[lab]' (tables work without it)")
    if args.source is not None:
        doc = _load(args.source)
    else:
        bar = Progress("bench")

        def progress(done: int, total: int, label: str) -> None:
            bar.label = f"{label:<34}"
            bar.update(done, total)

        opts = BenchOptions(
            scenarios=tuple(args.scenario or SCENARIO_IDS), routes=args.route, min_size=lo, max_size=hi,
            factor=args.factor, repeats=repeats, sample_bytes=sample,
            workdir=Path(args.dir) if args.dir else None, progress=progress,
        )  # fmt: skip
        argv = sys.argv[2:] if len(sys.argv) > 2 else []
        doc = run_bench(opts, argv)
        bar.close()
    if args.json == "-":
        jsonout.dump(doc, sys.stdout, indent=2)
        print()
    else:
        from zcopy.lab import compact

        width = compact.terminal_width()
        if args.wide:
            print(render.bench_tables(doc) + "\n")
            print("\n".join(f"• {line}" for line in compact.bench_summary(doc)))
        else:
            print(compact.bench(doc, width))
        for note in doc["notes"]:
            print("\n".join(compact.wrap(note, width if not args.wide else 1 << 20, first="! ")))
        if args.json:
            Path(args.json).write_text(jsonout.dumps(doc, indent=2) + "\n")
            print(f"JSON written to {args.json}")
    if args.report:
        from zcopy.lab.report import write_report

        paths = write_report(doc, Path(args.report))
        print("report: " + ", ".join(str(p) for p in paths), file=sys.stderr if args.json == "-" else sys.stdout)
    return 0


def _load(path: str) -> dict[str, Any]:
    from zcopy.lab.schema import BENCH, check

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read bench JSON: {exc}") from None
    errors = check(doc, BENCH)
    if errors:
        raise UserError(f"{path}: not a zcopy bench JSON ({errors[0]})")
    return doc  # type: ignore[no-any-return]
