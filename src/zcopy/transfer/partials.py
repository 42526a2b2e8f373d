"""The receiver's partial files (`.NAME.zcopy-part`, kept for --resume) as things that hold disk space: find them
under a target directory, name them when the disk is full, and drop them (`zcopy recv --clean-partials`, or a
session that did not ask to resume). A partial that a running session holds (its OFD lock) is never touched."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from zcopy.transfer.names import PARTIAL_SUFFIX
from zcopy.transfer.recv_tree import DIR_FLAGS, open_file

# How many directory entries a search for partials reads at most (a disk-full report must not walk a huge tree).
SCAN_LIMIT = 200_000


@dataclass(frozen=True)
class Partial:
    path: bytes  # relative to the target directory
    size: int  # bytes allocated on disk (st_blocks), what removing it gives back


def drop(name: bytes, parent: int) -> int | None:
    """Remove partial `name` in directory fd `parent` unless a session holds it: the bytes given back, or None
    when it is in use (or gone)."""
    try:
        ch = open_file(name, parent, os.O_RDWR)
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        if ch.try_lock() is None:
            return None  # a session is writing it
        st = os.fstat(ch.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        os.unlink(name, dir_fd=parent)
        return st.st_blocks * 512
    finally:
        ch.close()


def find(root: int, limit: int = SCAN_LIMIT) -> tuple[list[Partial], bool]:
    """Partials below directory fd `root` (never following symlinks), largest first; and whether the search
    stopped at `limit` entries before it saw everything."""
    found: list[Partial] = []
    seen = 0
    todo: list[bytes] = [b""]
    while todo:
        rel = todo.pop()
        try:
            fd = os.open(rel or b".", DIR_FLAGS, dir_fd=root)
        except OSError:
            continue
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    seen += 1
                    if seen > limit:
                        return sorted(found, key=lambda p: -p.size), True
                    name = os.fsencode(entry.name)
                    path = rel + b"/" + name if rel else name
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(path)
                    elif name.endswith(PARTIAL_SUFFIX) and name.startswith(b".") \
                            and entry.is_file(follow_symlinks=False):
                        found.append(Partial(path, entry.stat(follow_symlinks=False).st_blocks * 512))
        finally:
            os.close(fd)
    return sorted(found, key=lambda p: -p.size), False


def clean(root: int) -> tuple[list[Partial], list[Partial]]:
    """Remove every partial below `root` that no session holds: (removed, kept because in use)."""
    removed: list[Partial] = []
    busy: list[Partial] = []
    for part in find(root, limit=1 << 62)[0]:
        head, _, name = part.path.rpartition(b"/")
        try:
            parent = os.open(head or b".", DIR_FLAGS, dir_fd=root)
        except OSError:
            continue
        try:
            freed = drop(name, parent)
        finally:
            os.close(parent)
        if freed is None:
            busy.append(part)
        else:
            removed.append(Partial(part.path, freed))
    return removed, busy


__all__ = ["SCAN_LIMIT", "Partial", "clean", "drop", "find"]
