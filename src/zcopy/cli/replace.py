"""`zcopy replace OLD NEW FILE...`: find/replace in files of any size (in place through mmap, or rewrite).

Exit status, grep-like: 0 something matched (and was replaced unless --dry-run), 1 nothing matched,
2 an error (a bad argument, or any file that failed; the other files are still processed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING

from zcopy import jsonout
from zcopy.cli import UserError

if TYPE_CHECKING:
    from zcopy.edit import ReplaceResult

# Files at least this big get a progress bar (on a terminal only), as in `zcopy cp`.
PROGRESS_MIN = 64 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Exit status: 0 something matched (and was replaced unless --dry-run), 1 nothing matched, "
                "2 error (other files are still processed). Same-length literal edits go in place through a "
                "mapping (an interrupted run leaves some matches replaced); anything else, or --safe, is an "
                "atomic rewrite. See docs/replace.md.")
    p.add_argument("old", metavar="OLD", help="bytes to find (a Python re pattern with --regex)")
    p.add_argument("new", metavar="NEW", help="replacement (\\1, \\g<name> group references with --regex)")
    p.add_argument("files", metavar="FILE", nargs="+", help="regular files to edit")
    p.add_argument("--regex", "-E", action="store_true", help="OLD is a Python re pattern over bytes")
    p.add_argument("--ignore-case", "-i", action="store_true", help="ASCII case-insensitive match")
    p.add_argument("--count", "-c", type=int, default=0, metavar="N",
                   help="replace at most N matches per file (default: all)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--in-place", dest="mode", action="store_const", const="in-place",
                     help="edit through a READ_WRITE mapping (needs len(NEW) == len(OLD); default then)")
    how.add_argument("--safe", dest="mode", action="store_const", const="safe",
                     help="always rewrite to a temp file + atomic rename: a crash leaves old or new, never a mix")
    p.set_defaults(mode="auto")
    p.add_argument("--dry-run", "-n", action="store_true", help="change nothing; report what would change")
    p.add_argument("--backup", metavar="SUFFIX", help="keep the original as FILE+SUFFIX")
    p.add_argument("--encoding", metavar="ENC",
                   help="encode OLD and NEW with this codec (default: the command line's own bytes)")
    p.add_argument("--json", action="store_true", help="print one JSON object per run instead of text")


def _to_bytes(text: str, encoding: str | None) -> bytes:
    if encoding is None:
        return os.fsencode(text)  # exactly the bytes that were typed, whatever the locale
    try:
        return text.encode(encoding)
    except LookupError:
        raise UserError(f"unknown encoding {encoding!r}") from None
    except UnicodeEncodeError as exc:
        raise UserError(f"{text!r} cannot be encoded as {encoding}: {exc.reason}") from None


def run(args: argparse.Namespace) -> int:
    import faulthandler
    import re

    from zcopy.cli.progress import Progress
    from zcopy.edit import LengthChangeError, exit_code, replace
    from zcopy.edit.scan import Spec
    from zcopy.errors import ZeroCopyError

    # A file truncated by another process while mapped raises SIGBUS on the next touch, which Python cannot
    # catch. The scan checks the size before every window; for the race left, at least print where we died.
    if not faulthandler.is_enabled():
        with contextlib.suppress(OSError, ValueError):  # stderr without a file descriptor (embedded use)
            faulthandler.enable(sys.__stderr__ or sys.stderr)
    old, new = _to_bytes(args.old, args.encoding), _to_bytes(args.new, args.encoding)
    if args.count < 0:
        raise UserError("--count must be >= 0")
    try:
        spec = Spec(old, new, regex=args.regex, ignore_case=args.ignore_case, count=args.count)
    except re.error as exc:
        raise UserError(f"bad --regex pattern: {exc}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.mode == "in-place" and not spec.same_length:
        raise UserError("--in-place needs a literal NEW as long as OLD; use --safe (or no flag) to rewrite")
    results: list[ReplaceResult] = []
    errors: list[dict[str, str]] = []
    for path in args.files:
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0  # replace() reports the real error
        bar = Progress(f"replace {os.path.basename(path)}",
                       enabled=None if size >= PROGRESS_MIN and not args.json else False)
        try:
            r = replace(path, old, new, regex=args.regex, ignore_case=args.ignore_case, count=args.count,
                        mode=args.mode, dry_run=args.dry_run, backup=args.backup, progress=bar.update)
        except (ZeroCopyError, OSError) as exc:
            if isinstance(exc, LengthChangeError):
                raise UserError(str(exc)) from None
            msg = f"{exc.filename or path}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror \
                else str(exc)
            bar.close()
            errors.append({"path": path, "error": msg})
            if not args.json:
                print(f"zcopy replace: error: {msg}", file=sys.stderr)
            continue
        bar.close()
        results.append(r)
        if not args.json:
            print(render(r))
    if args.json:
        print(jsonout.dumps({"files": [r.as_dict() for r in results], "errors": errors}, indent=2))
    return exit_code(results, len(errors))


def render(r: ReplaceResult) -> str:
    """One line per file: matches, bytes changed, route, time."""
    if r.dry_run:
        what = f"{r.matches} matches would be replaced ({r.bytes_replaced} bytes; size {r.size_before} → " \
               f"{r.size_after}; route {r.route or 'none'})"
        return f"{r.path}: {what} [dry run]"
    if not r.matches:
        return f"{r.path}: no match"
    how = r.route or "unchanged (every match already equal to NEW)"
    extra = f", {r.user_bytes} bytes from user space"
    if r.kernel_bytes:
        extra += f", {r.kernel_bytes} in-kernel ({'/'.join(r.kernel_routes)})"
    if r.backup:
        extra += f", backup {r.backup}"
    size = f", size {r.size_before} → {r.size_after}" if r.size_after != r.size_before else ""
    return f"{r.path}: {r.matches} matches, {r.bytes_replaced} bytes replaced{size}; {how}{extra}; {r.wall_s:.3f} s"
