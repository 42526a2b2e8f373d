"""What `zcopy send` sends: PATHs walked like `cp -r` into manifest entries, each with the path its bytes come
from."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from zcopy.transfer import protocol as p
from zcopy.transfer.errors import TransferError
from zcopy.transfer.exclude import Excluder


@dataclass(frozen=True)
class Source:
    """A manifest entry and where its bytes come from."""

    entry: p.Entry
    path: str
    nested: bool  # found while walking a directory (opened with O_NOFOLLOW), not named on the command line


def collect(paths: Sequence[str | os.PathLike[str]], links: bool = False,
            exclude: Sequence[str] = ()) -> tuple[list[Source], list[str]]:
    """Walk PATHs like `cp -r`: a file → its basename, a directory `d` → `d`, `d/...`. Symlinks found inside
    directories are sent as links with `links`, else skipped with a warning; special files are always skipped.
    Names matching an `exclude` pattern (rsync's rules, zcopy.transfer.exclude) are left out, with what is below
    them."""
    sources: list[Source] = []
    warnings: list[str] = []
    skip = Excluder(exclude)
    for raw in paths:
        path = os.fspath(raw)
        st = os.stat(path)  # a symlink named on the command line is followed, as cp -r does
        base = os.path.basename(os.path.normpath(os.path.abspath(path)))
        if not base:
            raise TransferError(f"{path}: cannot send the root directory itself; name what is inside it")
        name = os.fsencode(base)
        if skip and skip.excluded(name, stat.S_ISDIR(st.st_mode)):
            continue
        if stat.S_ISREG(st.st_mode):
            sources.append(Source(_entry(name, st), path, nested=False))
        elif stat.S_ISDIR(st.st_mode):
            sources.append(Source(_entry(name, st), path, nested=False))
            _walk(path, name, sources, warnings, links, skip)
        else:
            raise TransferError(f"{path}: not a regular file or directory")
    return sources, warnings


def _entry(name: bytes, st: os.stat_result, target: bytes | None = None) -> p.Entry:
    is_dir = stat.S_ISDIR(st.st_mode)
    size = 0 if is_dir or target is not None else st.st_size
    return p.Entry(name, is_dir, size, stat.S_IMODE(st.st_mode), st.st_mtime_ns, target)


def _walk(path: str, name: bytes, sources: list[Source], warnings: list[str], links: bool, skip: Excluder) -> None:
    with os.scandir(path) as it:
        children = sorted(it, key=lambda d: d.name)
    for de in children:
        st = de.stat(follow_symlinks=False)
        child = name + b"/" + os.fsencode(de.name)
        if skip and skip.excluded(child, stat.S_ISDIR(st.st_mode)):
            continue
        if stat.S_ISDIR(st.st_mode):
            sources.append(Source(_entry(child, st), de.path, nested=True))
            _walk(de.path, child, sources, warnings, links, skip)
        elif stat.S_ISREG(st.st_mode):
            sources.append(Source(_entry(child, st), de.path, nested=True))
        elif stat.S_ISLNK(st.st_mode) and links:
            sources.append(Source(_entry(child, st, os.readlink(os.fsencode(de.path))), de.path, nested=True))
        else:
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "special file"
            hint = "; --links on both sides sends symlinks as links" if kind == "symlink" else ""
            warnings.append(f"skipped {de.path}: {kind} (only regular files and directories are sent{hint})")


__all__ = ["Source", "collect"]
