"""`zcopy cp -r/-a SRC... DST` (and `zcopy cp F1 F2... DIR`): GNU cp's rules for where each source goes, the tree
copied by zcopy.tree, errors listed with their paths, exit 1 if any, progress on a terminal, --json totals."""

from __future__ import annotations

import argparse
import os
import sys
import time

from zcopy.cli import UserError


def targets(sources: list[str], dst: str, recursive: bool) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Where each source goes, as cp decides: into DST when it is a directory (several sources need one), else DST
    itself. Returns the (src, dst) pairs and the (src, reason) of the sources refused."""
    into = os.path.isdir(dst)
    if len(sources) > 1 and not into:
        raise UserError(f"target {dst!r} is not a directory" if os.path.exists(dst) else f"{dst}: no such directory")
    if not into and not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
        raise UserError(f"{dst}: directory {os.path.dirname(os.path.abspath(dst))} does not exist")
    from zcopy.tree import inside_itself

    pairs: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for src in sources:
        target = os.path.join(dst, os.path.basename(os.path.normpath(src))) if into else dst
        if not os.path.lexists(src):
            refused.append((src, "no such file or directory"))
        elif os.path.isdir(src) and not (recursive and os.path.islink(src)):  # -r copies a symlink as a link
            if not recursive:
                refused.append((src, "is a directory (-r not specified): omitted"))
            elif (why := inside_itself(src, target)) is not None:
                refused.append((src, why))
            elif os.path.lexists(target) and not os.path.isdir(target):
                refused.append((src, f"cannot overwrite non-directory {target!r} with a directory"))
            else:
                pairs.append((src, target))
        elif os.path.exists(target) and os.path.samefile(src, target) and not os.path.islink(src):
            refused.append((src, f"{src!r} and {target!r} are the same file"))
        else:
            pairs.append((src, target))
    return pairs, refused


def run(args: argparse.Namespace) -> int:
    from zcopy import jsonout
    from zcopy.cli.progress import Progress, human_bytes
    from zcopy.tree import THREADS, Copier, Stopped, TreeCopied

    if args.atomic:
        raise UserError("--atomic publishes one file by rename; it does not apply to -r/-a or several sources")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    recursive = args.recursive or args.archive
    pairs, refused = targets(args.src, args.dst, recursive)
    bar = Progress("cp", enabled=False if args.json else None)

    def progress(files: int, files_total: int, done: int, total: int) -> None:
        bar.label = f"cp {files}/{files_total} files"
        bar.update(done, total)

    copier = Copier(
        metadata=args.archive or args.metadata, route=args.route, fallback=not args.no_fallback,
        threads=args.threads or THREADS, on_progress=progress,
    )  # fmt: skip
    for src, why in refused:
        copier.error(src, args.dst, why)
    t0 = time.perf_counter()
    stopped: Stopped | None = None
    try:
        # Without -r/-a, cp follows a symlink given as SRC (copies what it points to); with them it copies the link.
        result: TreeCopied = copier.run(pairs, sync=args.sync, follow=not recursive)
    except Stopped as exc:
        stopped, result = exc, exc.result
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    if args.json:
        summary: dict[str, object] = {
            "sources": args.src, "dst": args.dst, **result.totals(), "synced": args.sync and stopped is None,
            "errors": [{"src": s, "dst": d, "error": why} for s, d, why in result.errors],
            "stopped": None if stopped is None else {"path": stopped.filename, "error": stopped.strerror},
            "seconds": round(wall, 6),
        }  # fmt: skip
        jsonout.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        rate = int(result) / wall if wall > 0 else 0.0
        extra = ", ".join(f"{n} {k}" for k, n in (("symlinks", result.symlinks), ("hard links", result.hardlinks),
                                                    ("special files", result.specials)) if n)  # fmt: skip
        print(f"{result.files} files, {result.dirs} directories{', ' + extra if extra else ''}: "
              f"{human_bytes(int(result))} copied in {wall:.3f} s ({human_bytes(rate)}/s)"
              f"{', synced' if args.sync and stopped is None else ''}")  # fmt: skip
        for name, (files, nbytes) in sorted(result.routes.items()):
            print(f"  {name}: {files} files, {human_bytes(nbytes)}")
    for src, _dst, why in result.errors:
        print(f"zcopy cp: {src}: {why}", file=sys.stderr)
    if stopped is not None:
        print(f"zcopy cp: stopped: {stopped.filename}: {stopped.strerror}", file=sys.stderr)
    return 1 if result.errors or stopped is not None else 0
