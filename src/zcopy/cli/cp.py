"""`zcopy cp SRC DST`: copy a file by the best route and say which route it took; `-r`/`-a` and several sources
go to cli/cptree.py."""

from __future__ import annotations

import argparse
import os
import sys
import time

from zcopy.cli import UserError

# Files at least this big get a progress bar (on a terminal): below it the copy is over before a bar is seen.
PROGRESS_MIN = 64 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zcopy.routes import ROUTES

    p.add_argument("src", metavar="SRC", nargs="+", help="file to copy (with -r or -a: also a directory tree)")
    p.add_argument("dst", metavar="DST", help="destination file or directory (an existing one for several SRC)")
    p.add_argument("-r", "-R", "--recursive", action="store_true", help="copy directories recursively")
    p.add_argument("-a", "--archive", action="store_true",
                   help="-r keeping mode, owner, times, symlinks as links, hard links, xattrs (as cp -a)")  # fmt: skip
    p.add_argument("--sync", action="store_true",
                   help="make the copy durable before exiting (a tree: one syncfs at the end, not an fsync a file)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads copying a tree's files (default 4); 1 copies one file at a time")
    p.add_argument("--route", choices=ROUTES, help="force one route (fails instead of falling back)")
    p.add_argument("--no-fallback", action="store_true", help="use only the best route for this pair, or fail")
    p.add_argument("--metadata", "-p", action="store_true",
                   help="also copy mode and access/modify times (with -r or several SRC: as -a)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    p.add_argument("--atomic", action="store_true",
                   help="write a temp file and rename it over DST when complete (readers see old or new, "
                        "never a part); refuses a DST that is not a regular file. Default: write into DST as "
                        "cp does")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from shutil import SameFileError

    from zcopy import RouteUnavailable, TruncatedFileError
    from zcopy.cli.progress import Progress, human_bytes
    from zcopy.dest import DestinationRefused
    from zcopy.fastcopy import copy_result

    if args.recursive or args.archive or len(args.src) > 1 or args.threads is not None:
        from zcopy.cli import cptree

        return cptree.run(args)
    src, dst = args.src[0], args.dst
    if not os.path.exists(src):
        raise UserError(f"{src}: no such file")
    if os.path.isdir(src):
        raise UserError(f"{src}: is a directory (-r not specified; -r or -a copies a tree)")
    if not os.path.isfile(src):
        raise UserError(f"{src}: not a regular file")
    parent = os.path.dirname(os.path.abspath(dst)) if not os.path.isdir(dst) else dst
    if not os.path.isdir(parent):
        raise UserError(f"{dst}: directory {parent} does not exist")
    size = os.path.getsize(src)
    into = os.path.join(dst, os.path.basename(src)) if os.path.isdir(dst) else dst
    # What a failure leaves: an existing file written in place (as cp writes it) keeps what was written so far.
    left = "it was partly written" if os.path.exists(into) and not args.atomic else "nothing was written to it"
    bar = Progress(f"cp {os.path.basename(src)}", enabled=None if size >= PROGRESS_MIN and not args.json else False)
    t0 = time.perf_counter()
    try:
        moved = copy_result(
            src, dst, route=args.route, fallback=not args.no_fallback, metadata=args.metadata, progress=bar.update,
            atomic=args.atomic,
        )
    except (RouteUnavailable, DestinationRefused, SameFileError) as exc:
        raise UserError(str(exc)) from None
    except TruncatedFileError as exc:
        raise UserError(f"{exc}; {into}: {left}") from None
    except OSError as exc:
        raise UserError(f"{exc.strerror or exc}: {exc.filename or into}; {into}: {left}") from None
    finally:
        bar.close()
    synced = args.sync and moved.dst_kind == "file"
    if synced:
        fd = os.open(into, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    wall = time.perf_counter() - t0
    summary = {
        "src": src,
        "dst": dst,
        "bytes": moved.nbytes,
        "route": moved.route,
        "dst_kind": moved.dst_kind,
        "why": moved.reason,
        "skipped": [{"route": r, "reason": why} for r, why in moved.skipped],
        "synced": synced,
        "seconds": round(wall, 6),
    }
    if args.json:
        from zcopy import jsonout

        jsonout.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        rate = moved.nbytes / wall if wall > 0 else 0.0
        into = {"pipe": " into a FIFO", "other": " into a device"}.get(moved.dst_kind, "")
        print(f"{human_bytes(moved.nbytes)} copied by {moved.route}{into} in {wall:.3f} s ({human_bytes(rate)}/s)"
              f"{', synced' if synced else ''}")  # fmt: skip
        if moved.reason:
            print(f"  why: {moved.reason}")
        for r, why in moved.skipped:
            print(f"  fell back from {r}: {why}")
    return 0
