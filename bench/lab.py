"""Lab benchmark for `make bench`: zcopy bench's scenarios × sizes × routes, medians with min/max.

    .venv/bin/python bench/lab.py [--quick] [--out FILE.md]

Same engine as `zcopy bench` (zcopy.lab.bench): contenders shuffled per round, one observe() per sample.
--quick: 4 KiB…16 MiB, 2 rounds (proves it works on a loaded machine); default: 4 KiB…1 GiB, 3 rounds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import machine  # bench/ is on sys.path when run as a script (as bench/run.py does)

from zcopy.lab import render
from zcopy.lab.bench import BenchOptions, run_bench
from zcopy.lab.stats import GiB, MiB


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/lab.py", description="zcopy lab benchmark: scenarios × sizes × routes")
    p.add_argument("--quick", action="store_true", help="4 KiB…16 MiB, 2 rounds, 8 MiB per sample")
    p.add_argument("--out", metavar="FILE.md", help="write the markdown section here")
    args = p.parse_args(argv)
    if args.quick:
        opts = BenchOptions(max_size=16 * MiB, repeats=2, sample_bytes=8 * MiB)
    else:
        opts = BenchOptions(max_size=1 * GiB, repeats=3)
    doc = run_bench(opts, ["--quick"] if args.quick else [])
    doc["command"] = "python bench/lab.py" + (" --quick" if args.quick else "")
    print(render.bench_tables(doc))
    if args.out:
        Path(args.out).write_text(render.bench_markdown(doc, machine()))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
