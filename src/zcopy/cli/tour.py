"""`zcopy tour`: run the article's data paths on this machine and show what each one costs, measured."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from zcopy import jsonout
from zcopy.cli import UserError

DEFAULT_SIZE = "256M"
DEFAULT_REPEATS = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Measuring options default to None so --from can tell which were given (they do not apply to a saved run).
    p.add_argument("--size", help=f"size of the generated sample file (default {DEFAULT_SIZE}; e.g. 64M, 1G)")
    p.add_argument("--file", metavar="PATH", help="tour your own file instead (edit steps work on a temp copy)")
    p.add_argument("--keep", action="store_true", default=None, help="keep the temp directory and print where it is")
    p.add_argument("--no-cold", dest="cold", action="store_false", default=None,
                   help="skip the cold (evicted page cache) runs")  # fmt: skip
    p.add_argument("--repeats", type=int, help=f"warm runs per path; the median-CPU run is shown ({DEFAULT_REPEATS})")
    p.add_argument("--dir", metavar="DIR", help="where to make the temp directory (default: system temp dir)")
    p.add_argument("--json", action="store_true", help="print the whole tour as JSON (schema zcopy.tour/1)")
    p.add_argument("--wide", action="store_true", help="every counter of every run and the full comparison table, "
                   "whatever the terminal's width (default: what fits, 80 columns when piped)")  # fmt: skip
    p.add_argument("--report", metavar="DIR", help="also draw the tour as a page: DIR/index.html with one diagram "
                   "per path, a CPU/wall chart and the figures (opens offline from disk)")  # fmt: skip
    p.add_argument("--from", dest="source", metavar="JSON", help="do not measure: render a saved `zcopy tour "
                   "--json` run (text, --json, or --report DIR)")  # fmt: skip


MEASURING = {"size": "--size", "file": "--file", "keep": "--keep", "cold": "--no-cold", "repeats": "--repeats",
             "dir": "--dir"}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from zcopy.lab import compact, render

    report = Path(args.report) if args.report is not None else None
    if report is not None:
        check_report_dir(report)
    if args.source is not None:
        given = [flag for dest, flag in MEASURING.items() if getattr(args, dest) is not None]
        if given:
            verb = "does" if len(given) == 1 else "do"
            raise UserError(f"--from renders a saved run: {', '.join(given)} {verb} not apply (nothing is measured)")
        doc = load(args.source)
        if report is None and not args.json:
            print(render.render_tour(doc) if args.wide else compact.tour(doc, compact.terminal_width()))
    else:
        doc = measure(args)
    if args.json:
        jsonout.dump(doc, sys.stdout, indent=2)
        print()
    if report is not None:
        index = write_report(doc, report, _command(args))
        print(f"report: {index} (open it in a browser; it works offline)", file=sys.stderr if args.json else sys.stdout)
    elif not args.json and args.source is None:
        # On a line of its own, never wrapped: it is there to be copied and run.
        print("see it drawn (this measures again, then draws each path with its numbers):")
        print("  " + _command(args, report="tour-report", program=invocation()))
    return 0


def invocation() -> str:
    """How to run this zcopy again from the user's shell: `zcopy` when PATH finds this very program, else its path
    (`.venv/bin/zcopy` after `make tour`), or `PYTHON -m zcopy` when it was started that way."""
    import shlex

    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "zcopy"
    if Path(argv0).name == "__main__.py":  # python -m zcopy
        return f"{shlex.quote(_shown(sys.executable))} -m zcopy"
    found = shutil.which("zcopy")
    try:
        if found is not None and os.path.samefile(found, argv0):
            return "zcopy"
    except OSError:
        pass
    return shlex.quote(_shown(argv0))


def _shown(path: str) -> str:
    """``path`` relative to the current directory when it is below it (short, and it runs from here), else absolute."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full)
    return rel if not rel.startswith("..") and os.sep in rel else full


def _command(args: argparse.Namespace, report: str | None = None, program: str = "zcopy") -> str:
    """The command line that made this report, for its footer (options as given, values quoted for a shell)."""
    import shlex

    parts = [program, "tour"]
    for dest, flag in MEASURING.items():
        value = getattr(args, dest)
        if value is True or value is False:
            parts.append(flag)
        elif value is not None:
            parts += [flag, shlex.quote(str(value))]
    if args.source is not None:
        parts += ["--from", shlex.quote(args.source)]
    parts += ["--report", shlex.quote(report if report is not None else args.report)]
    return " ".join(parts)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from zcopy.lab import compact, render
    from zcopy.lab.stats import parse_size
    from zcopy.lab.tour import TourOptions, run_tour

    try:
        size = parse_size(args.size or DEFAULT_SIZE)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    file = None
    if args.file is not None:
        file = Path(args.file)
        if not file.exists():
            raise UserError(f"{args.file}: no such file")
        if not file.is_file():
            raise UserError(f"{args.file}: not a regular file")
        if file.stat().st_size == 0:
            raise UserError(f"{args.file}: empty file, nothing to move")
    workdir = None
    if args.dir is not None:
        workdir = Path(args.dir)
        if not workdir.is_dir():
            raise UserError(f"{args.dir}: not a directory")
    repeats = DEFAULT_REPEATS if args.repeats is None else args.repeats
    if repeats < 1:
        raise UserError("--repeats must be at least 1")
    opts = TourOptions(size=size, file=file, keep=bool(args.keep), cold=args.cold is not False, workdir=workdir,
                       repeats=repeats)  # fmt: skip

    width = compact.terminal_width()

    def show(i: int, step: dict[str, object]) -> None:
        if not args.json:
            print(render.step_block(i, step) + "\n" if args.wide else compact.tour_step(i, step, width), flush=True)

    def start(doc: dict[str, object]) -> None:
        if not args.json:
            print(render.render_head(doc) if args.wide else compact.tour_head(doc, width), flush=True)

    doc = run_tour(opts, on_step=show, on_start=start)
    if not args.json:
        print(render.render_tail(doc) if args.wide else "\n" + compact.tour_tail(doc, width))
    return doc


def load(path: str) -> dict[str, Any]:
    """A saved `zcopy tour --json` document, checked against the schema: a clear error, never a traceback."""
    from zcopy.lab.schema import TOUR, TOUR_VERSION, check

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: cannot read tour JSON: {exc}") from None
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith(TOUR_VERSION.split("/")[0] + "/"):
        raise UserError(f"{path}: not a zcopy tour JSON (no \"schema\": \"{TOUR_VERSION}\"; make one with "
                        "`zcopy tour --json > tour.json`)")  # fmt: skip
    errors = check(doc, TOUR)
    if errors:
        raise UserError(f"{path}: not a zcopy tour JSON ({errors[0]})")
    empty = [s["id"] for s in doc["steps"] if not s["runs"]]
    if empty:
        raise UserError(f"{path}: step {empty[0]} has no runs")
    return doc


def check_report_dir(path: Path) -> None:
    """Refuse an unusable report folder before measuring (the tour takes seconds to minutes)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--report {path}: exists and is not a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"--report {path}: cannot create files under {probe}")


def write_report(doc: dict[str, Any], outdir: Path, command: str) -> Path:
    """Render every file first, then publish: written to a staging folder inside outdir and moved into place,
    so a failure leaves no half-written page (and a previous report stays whole)."""
    from zcopy.lab import tourpage

    try:
        files = tourpage.build(doc, command)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        # Only reachable with a hand-edited --from document that passes the schema but not the renderer.
        raise UserError(f"cannot draw this tour JSON: {type(exc).__name__}: {exc}") from None
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".zcopy-report-", dir=outdir))
    except OSError as exc:
        raise UserError(f"--report {outdir}: {exc.strerror or exc}") from None
    try:
        for name, text in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        subdirs = {Path(n).parts[0] for n in files if len(Path(n).parts) > 1}
        for sub in subdirs:  # a whole folder swaps in, so no diagram of an earlier report lingers in it
            if (outdir / sub).is_dir():
                (outdir / sub).rename(staging / f".old-{sub}")
            (staging / sub).rename(outdir / sub)
        for name in files:
            if len(Path(name).parts) == 1:
                os.replace(staging / name, outdir / name)
    except OSError as exc:
        raise UserError(f"--report {outdir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return outdir / "index.html"
