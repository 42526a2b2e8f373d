"""`zcopy tour`: run the article's data paths on this machine and show what each one costs, measured."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zcopy.cli import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", default="256M", help="size of the generated sample file (default 256M; e.g. 64M, 1G)")
    p.add_argument("--file", metavar="PATH", help="tour your own file instead (edit steps work on a temp copy)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory and print where it is")
    p.add_argument("--no-cold", dest="cold", action="store_false", help="skip the cold (evicted page cache) runs")
    p.add_argument("--repeats", type=int, default=3, help="warm runs per path; the median-CPU run is shown (3)")
    p.add_argument("--dir", metavar="DIR", help="where to make the temp directory (default: system temp dir)")
    p.add_argument("--json", action="store_true", help="print the whole tour as JSON (schema zcopy.tour/1)")


def run(args: argparse.Namespace) -> int:
    from zcopy.lab import render
    from zcopy.lab.stats import parse_size
    from zcopy.lab.tour import TourOptions, run_tour

    try:
        size = parse_size(args.size)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    file = None
    if args.file is not None:
        file = Path(args.file)
        if not file.is_file():
            raise UserError(f"{args.file}: not a regular file")
        if file.stat().st_size == 0:
            raise UserError(f"{args.file}: empty file, nothing to move")
    workdir = None
    if args.dir is not None:
        workdir = Path(args.dir)
        if not workdir.is_dir():
            raise UserError(f"{args.dir}: not a directory")
    if args.repeats < 1:
        raise UserError("--repeats must be at least 1")
    opts = TourOptions(size=size, file=file, keep=args.keep, cold=args.cold, workdir=workdir, repeats=args.repeats)

    def show(i: int, step: dict[str, object]) -> None:
        if not args.json:
            print(render.step_block(i, step) + "\n", flush=True)

    def start(doc: dict[str, object]) -> None:
        if not args.json:
            print(render.render_head(doc), flush=True)

    doc = run_tour(opts, on_step=show, on_start=start)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(render.render_tail(doc))
    return 0
