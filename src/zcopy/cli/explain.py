"""`zcopy explain FILE --to socket|file|pipe`: one real transfer, its route, why, and what it cost."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zcopy import jsonout
from zcopy.cli import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zcopy.routes import ROUTES

    p.add_argument("file", metavar="FILE", help="the file to move (it is only read)")
    p.add_argument("--to", required=True, choices=("socket", "file", "pipe"), help="kind of target")
    p.add_argument("--route", choices=ROUTES, help="force one route (fails instead of falling back)")
    p.add_argument("--dest-dir", metavar="DIR", help="--to file: where the temporary copy goes "
                   "(default: next to FILE; another filesystem shows copy_file_range's EXDEV)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")


def run(args: argparse.Namespace) -> int:
    from zcopy.errors import RouteUnavailable
    from zcopy.lab import render
    from zcopy.lab.explain import explain

    path = Path(args.file)
    if not path.exists():
        raise UserError(f"{args.file}: no such file")
    if not path.is_file():
        raise UserError(f"{args.file}: not a regular file")
    dest = None
    if args.dest_dir is not None:
        dest = Path(args.dest_dir)
        if not dest.is_dir():
            raise UserError(f"{args.dest_dir}: not a directory")
    try:
        doc = explain(path, args.to, args.route, dest)
    except RouteUnavailable as exc:
        raise UserError(f"route {exc.route} cannot move {args.file} to a {args.to}: {exc.reason}") from None
    except PermissionError as exc:
        raise UserError(f"{exc.filename or args.file}: permission denied") from None
    if args.json:
        jsonout.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(render.render_explain(doc))
    return 0
