"""Where a copy's bytes go: into the destination as GNU cp writes (the default), or atomically (temp + rename).

In place (`open_into`), like `cp`:
- a new name is created (O_EXCL) with the source's permission bits minus the umask, and removed if the copy fails;
- an existing regular file is opened with O_TRUNC: the same inode, so its mode, owner and hard links stay;
- a symlink is followed to its target (a dangling one is refused, as `cp` refuses it);
- a character or block device or a FIFO is opened for writing and streamed into (a FIFO waits for its reader);
- a directory is refused.

Atomic (`open_atomic`): the bytes go to a temp file beside the destination (beside a symlink's target), renamed over
it when complete, so a reader sees the old file or the new one and a failure leaves the old one. The new inode takes
the old file's mode and owner; other hard links keep the old content. Only a regular (or new) destination can be
published that way: anything else is refused before a byte moves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile

from zcopy.errors import ZeroCopyError


class DestinationRefused(ZeroCopyError, ValueError):
    """The destination cannot be written the way asked (``path`` names it, the message says why)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# Kinds of destination, as open_into/open_atomic found them.
NEW = "new"  # did not exist: created
FILE = "file"  # an existing regular file
DEVICE = "device"  # character or block device
FIFO = "fifo"


def kind_of_mode(mode: int) -> str:
    """Pure: the destination kind of an existing node's st_mode (directories and sockets are refused, not kinds)."""
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return DEVICE
    if stat.S_ISFIFO(mode):
        return FIFO
    if stat.S_ISDIR(mode):
        raise ValueError("cannot overwrite a directory with a file")
    if stat.S_ISSOCK(mode):
        raise ValueError("is a socket: a file cannot be written into it")
    raise ValueError("is not a file, device or FIFO")


class Destination:
    """An open destination fd and how to finish or abandon it. `finish()` publishes (atomic: renames; new: keeps);
    `abandon()` removes what this copy created (a new file or the temp file); an existing file written in place
    stays as far as it got, as with cp."""

    __slots__ = ("fd", "kind", "path", "tmp")

    def __init__(self, fd: int, path: str, kind: str, tmp: str | None = None) -> None:
        self.fd = fd
        self.path = path  # the name the bytes end up under (a symlink's target when one was followed)
        self.kind = kind
        self.tmp = tmp  # atomic: the temp file's name

    @property
    def regular(self) -> bool:
        return self.kind in (NEW, FILE)

    def finish(self) -> None:
        fd, self.fd = self.fd, -1
        os.close(fd)
        if self.tmp is not None:
            os.replace(self.tmp, self.path)

    def abandon(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        doomed = self.tmp if self.tmp is not None else (self.path if self.kind == NEW else None)
        if doomed is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(doomed)


def _existing(path: str) -> os.stat_result | None:
    """stat() of what a write to `path` would reach (a symlink's target); None if nothing is there; a dangling
    symlink is refused as cp refuses it."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DestinationRefused(path, "not writing through a dangling symlink") from None
        return None


def open_into(path: str, src_mode: int) -> Destination:
    """Open `path` for a copy written into it the way GNU cp writes (see the module docstring)."""
    for _ in range(2):
        st = _existing(path)
        if st is None:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, src_mode & 0o777)
            except FileExistsError:
                continue  # created meanwhile: write into it as an existing file
            return Destination(fd, path, NEW)
        try:
            kind = kind_of_mode(st.st_mode)
        except ValueError as exc:
            raise DestinationRefused(path, str(exc)) from None
        flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_TRUNC if kind == FILE else 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise DestinationRefused(path, "no process has this FIFO or device open for the other end") from None
            raise
        return Destination(fd, path, kind)
    raise DestinationRefused(path, "appeared and vanished while being opened")


def open_atomic(path: str, src_mode: int) -> Destination:
    """A temp file beside `path` (beside its target, if `path` is a symlink) to be renamed over it by finish().
    Refuses a destination that is not a regular file: a rename would replace the device, FIFO or directory."""
    st = _existing(path)
    if os.path.islink(path):
        path = os.path.realpath(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            what = kind_of_mode(st.st_mode)
        except ValueError as exc:
            raise DestinationRefused(path, str(exc)) from None
        raise DestinationRefused(
            path, f"is a {'device' if what == DEVICE else 'FIFO'}: --atomic publishes by renaming a new file over "
            "the name, which would replace it; copy without --atomic to write into it")  # fmt: skip
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".zcopy-tmp", dir=parent)
    try:
        if st is not None:
            if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, st.st_mode & 0o7777)  # after fchown, which clears set-id bits
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, src_mode & 0o777 & ~umask)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return Destination(fd, path, FILE if st is not None else NEW, tmp)
