"""The receiver's directories below its target root: walked one O_NOFOLLOW component at a time, cached as
descriptors, and let go when a tree of many directories nears the descriptor budget."""

from __future__ import annotations

import errno
import os

from zcopy import FileChannel
from zcopy.transfer.errors import E_EXISTS, TransferError, UnsafeNameError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Tree:
    """Directory fds below `root` (which the Tree does not own), keyed by their checked name components."""

    def __init__(self, root: int, fd_budget: int) -> None:
        self.fds: dict[tuple[bytes, ...], int] = {(): root}
        self.fd_budget = fd_budget

    @property
    def root(self) -> int:
        return self.fds[()]

    def __len__(self) -> int:
        return len(self.fds)

    def dir(self, parts: tuple[bytes, ...], create: bool) -> int | None:
        """fd of directory `parts` below the root, walked one O_NOFOLLOW component at a time; None if it
        does not exist and not `create`. A symlink or non-directory on the way is refused."""
        fd = self.fds.get(parts)
        if fd is not None:
            return fd
        parent = self.dir(parts[:-1], create)
        if parent is None:
            return None
        name = parts[-1]
        shown = b"/".join(parts).decode("utf-8", "backslashreplace")
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(name, 0o777, dir_fd=parent)  # the umask applies, as for mkdir -p
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeNameError(f"{shown} is a symlink in the target directory; refusing to follow it") from None
            if exc.errno == errno.ENOTDIR:
                raise TransferError(f"{shown} exists and is not a directory", E_EXISTS) from None
            raise
        self.fds[parts] = fd
        return fd

    def trim(self) -> None:
        """A tree of many directories: close the cached directory fds (but the root's) once they reach half the
        descriptor budget. Call it only where nothing queued refers to them; dir() walks again (O_NOFOLLOW,
        component by component) when one is needed."""
        if len(self.fds) <= self.fd_budget // 2:
            return
        for parts, fd in list(self.fds.items()):
            if parts:
                os.close(fd)
                del self.fds[parts]

    def close(self) -> None:
        for parts, fd in self.fds.items():
            if parts:
                os.close(fd)
        self.fds = {}


def lstat(name: bytes, parent: int | None) -> os.stat_result | None:
    if parent is None:
        return None
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_file(name: bytes, parent: int, flags: int) -> FileChannel:
    # 0600 while incomplete: nobody else reads a file we have not verified. O_NOFOLLOW: never through a symlink.
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
    return FileChannel(fd, own=True, name=os.fsdecode(name))


__all__ = ["DIR_FLAGS", "Tree", "lstat", "open_file"]
