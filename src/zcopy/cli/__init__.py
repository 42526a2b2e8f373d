"""The `zcopy` command: one thin module per subcommand (parse → call → render), imported only when used."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from zcopy import __version__

# name → (module under zcopy.cli, one-line help). Modules expose add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "cp": ("cp", "copy files and trees (-r, -a) by the best route (in the kernel where it can) and name it"),
    "tour": ("tour", "run the article's data paths on this machine and measure every copy"),
    "bench": ("bench", "benchmark routes across sizes: median tables, JSON, plots"),
    "explain": ("explain", "move one file and explain the route taken, and why not the others"),
    "serve": ("serve", "serve a directory or an ASGI app over HTTP/1.1, file bodies by sendfile"),
    "replace": ("replace", "find/replace in files of any size through mmap (in place or atomic rewrite)"),
    "send": ("send", "send files and trees to `zcopy recv` (sendfile, verified, resumable)"),
    "recv": ("recv", "receive `zcopy send` sessions into a directory (O_DIRECT, or splice with --cache; verified)"),
    "relay": ("relay", "pair `send --relay` and `recv --relay` by short code; splice their bytes, never decrypt"),
}


class UserError(Exception):
    """A mistake in the user's input: printed as `zcopy: error: ...`, exit code 2, no traceback."""


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. Given argv, only the chosen command's module is imported: every `zcopy cp` would
    otherwise pay for importing every command's module and what it imports."""
    # allow_abbrev=False everywhere: a prefix must never silently become another option (`serve --header X:1`
    # was once taken for --header-timeout).
    parser = argparse.ArgumentParser(
        prog="zcopy", description="Zero-copy I/O toolkit: every operation names the route it took.", allow_abbrev=False
    )
    parser.add_argument("--version", action="version", version=f"zcopy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if chosen is None or chosen == name:
            mod = importlib.import_module(f"zcopy.cli.{module}")
            mod.add_arguments(p)
            p.set_defaults(_module=mod, _parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # under the subcommand's usage, not the top-level one
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        rc: int = args._module.run(args)
    except UserError as exc:
        print(f"zcopy {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zcopy {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`zcopy tour | head`): stop quietly, and keep the interpreter's final flush of
        # stdout from raising again (the recipe in Python's signal module docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a broken pipe
    return rc
