"""Path-safety policy for names that arrive in a manifest: pure, no file system access.

A name is a relative POSIX path in bytes, "/"-separated. Anything that could land outside the target directory
(absolute, `..`, NUL, backslash tricks) or collide with the receiver's own partial files is refused here; the
receiver's I/O glue then walks the checked components with dir_fd + O_NOFOLLOW, refusing symlinks inside DIR.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from zcopy.transfer.errors import UnsafeNameError

# NAME_MAX (255) and PATH_MAX (4096 incl. NUL) from limits.h: longer names cannot exist on Linux file systems.
NAME_MAX = 255
PATH_MAX = 4095

# Suffix of the receiver's partial files. Manifest names ending in it are refused so a sent file can never be
# mistaken for (or overwrite) the partial of another file.
PARTIAL_SUFFIX = b".zcopy-part"


def split_name(name: bytes) -> tuple[bytes, ...]:
    """Return the components of a safe relative name, or raise UnsafeNameError saying why it is refused."""
    shown = name[:200].decode("utf-8", "backslashreplace")
    if not name:
        raise UnsafeNameError("empty name")
    if len(name) > PATH_MAX:
        raise UnsafeNameError(f"name longer than {PATH_MAX} bytes: {shown!r}...")
    if b"\x00" in name:
        raise UnsafeNameError(f"NUL byte in name {shown!r}")
    # A backslash is an ordinary byte on Linux but a separator on Windows (and in some archivers' eyes):
    # "..\\..\\etc" must not become a path on any receiver, so no backslash at all.
    if b"\\" in name:
        raise UnsafeNameError(f"backslash in name {shown!r}")
    if name.startswith(b"/"):
        raise UnsafeNameError(f"absolute name {shown!r}")
    parts = tuple(name.split(b"/"))
    for part in parts:
        if part in (b"", b".", b".."):
            raise UnsafeNameError(f"name {shown!r} has an empty, '.' or '..' component")
        if len(part) > NAME_MAX:
            raise UnsafeNameError(f"component longer than {NAME_MAX} bytes in {shown!r}")
    if parts[-1].endswith(PARTIAL_SUFFIX):
        raise UnsafeNameError(f"name {shown!r} ends in the receiver's partial-file suffix")
    return parts


def partial_name(component: bytes) -> bytes:
    """The receiver's partial file for final name `component` in the same directory (hidden, deterministic).

    Deterministic so a resumed session finds it again; a digest of the name stands in when the readable
    form would exceed NAME_MAX.
    """
    readable = b"." + component + PARTIAL_SUFFIX
    if len(readable) <= NAME_MAX:
        return readable
    return b"." + hashlib.sha256(component).hexdigest().encode() + PARTIAL_SUFFIX


class TreeCheck:
    """The whole-manifest checks, fed one entry at a time (the manifest streams in chunks): every name safe, no
    duplicates, no file (or symlink) used as a parent directory, whatever the order."""

    def __init__(self) -> None:
        self._kinds: dict[tuple[bytes, ...], bool] = {}
        self._parents: set[tuple[bytes, ...]] = set()

    def add(self, name: bytes, is_dir: bool) -> tuple[bytes, ...]:
        parts = split_name(name)
        if parts in self._kinds:
            raise UnsafeNameError(f"duplicate name {name.decode('utf-8', 'backslashreplace')!r}")
        if not is_dir and parts in self._parents:
            raise UnsafeNameError(f"{name.decode('utf-8', 'backslashreplace')!r} is a file, and other names lie "
                                  "under it as if it were a directory")
        for depth in range(len(parts) - 1, 0, -1):
            parent = parts[:depth]
            if self._kinds.get(parent) is False:
                shown = name.decode("utf-8", "backslashreplace")
                raise UnsafeNameError(f"{shown!r} lies under a name that is a file, not a directory")
            if parent in self._parents:
                break  # its own parents were checked when it was first added
            self._parents.add(parent)
        self._kinds[parts] = is_dir
        return parts


def check_tree(entries: Iterable[tuple[bytes, bool]]) -> None:
    """Check a whole manifest: every name safe, no duplicates, no file used as a parent directory.

    `entries` yields (name, is_dir). Raises UnsafeNameError on the first problem.
    """
    tree = TreeCheck()
    for name, is_dir in entries:
        tree.add(name, is_dir)
