"""Open a path under the root without ever leaving it: one component at a time, dir_fd + O_NOFOLLOW.

Symlink policy: a link is followed only if its target, resolved by us (not the kernel) against the components
already walked, stays inside the root; ".." pops our own stack and cannot climb above the root. Because each
step opens relative to an fd we hold and refuses to follow links itself, a symlink swapped in mid-request is
seen as a link and judged by the same policy; a directory renamed out of the root mid-walk is caught by
re-checking the opened inode's plain path afterwards. Everything refused or missing is the same None (→ 404);
running out of descriptors is not a missing file, so those errors (errnos.EXHAUSTED) propagate (→ 503).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from zcopy.serve import listing
from zcopy.serve.errnos import EXHAUSTED

# Linux follows at most 40 symlinks in one lookup (MAXSYMLINKS, fs/namei.c); beyond → ELOOP. Same bound here.
MAX_SYMLINKS = 40

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_PATH first for the last component: opening a FIFO or device O_RDONLY could block or have side effects,
# so we only open for reading after fstat says "regular file" (via /proc/self/fd, the same inode, race-free).
_LAST_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


@dataclass(slots=True)
class Opened:
    """What a path resolved to: ``fd`` (readable for files, O_PATH for directories), its stat, and kind."""

    fd: int
    st: os.stat_result
    is_dir: bool


class Resolver:
    """Resolves request segments under one root directory; holds the root's fd for its lifetime."""

    def __init__(self, root: str | os.PathLike[str], *, dotfiles: bool = False, follow_symlinks: bool = True) -> None:
        self.root = os.path.realpath(root)
        self.root_b = os.fsencode(self.root)
        self.root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dotfiles = dotfiles
        self.follow_symlinks = follow_symlinks

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def _link_target(self, name: bytes, dir_fd: int) -> list[bytes] | None:
        """The components a symlink points to, relative to the root when absolute; None when it escapes."""
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            return None
        if target.startswith(b"/"):
            root = self.root_b.rstrip(b"/") + b"/"
            if not (target + b"/").startswith(root):
                return None
            return [b"/", *target[len(root) :].split(b"/")]  # b"/" = restart at the root
        return target.split(b"/")

    def open(self, segments: tuple[bytes, ...] | list[bytes]) -> Opened | None:
        """Open the file or directory named by ``segments`` under the root; None when missing or refused."""
        names: list[bytes] = []
        opened = self._walk(segments, names)
        if opened is not None and names and not self._still_beneath(names, opened.st):
            os.close(opened.fd)
            return None
        return opened

    def _still_beneath(self, names: list[bytes], st: os.stat_result) -> bool:
        """Is the inode we opened still reachable from the root by its plain names (no links)?

        A directory we were walking may have been renamed out of the root between two of our steps; then the
        names no longer lead to the same inode and the answer is no (→ 404). Costs one more walk, on cache
        misses only; openat2(RESOLVE_BENEATH) would do it in the kernel, but Python has no binding for it.
        """
        fds: list[int] = []
        cur = self.root_fd
        try:
            for name in names[:-1]:
                cur = os.open(name, _DIR_FLAGS, dir_fd=cur)
                fds.append(cur)
            again = os.stat(names[-1], dir_fd=cur, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in EXHAUSTED:
                raise
            return False
        finally:
            for fd in fds:
                os.close(fd)
        return (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino)

    def _walk(self, segments: tuple[bytes, ...] | list[bytes], names: list[bytes]) -> Opened | None:
        """The component walk; ``names`` ends as the plain names from the root to what was opened."""
        todo = list(reversed(segments))  # a stack: pop() takes the next component
        stack: list[int] = []  # directory fds we opened (the root's is not ours to close); names[i] ↔ stack[i]
        hops = 0
        try:
            if not todo:
                st = os.stat(".", dir_fd=self.root_fd)
                return Opened(os.dup(self.root_fd), st, True)
            while todo:
                name = todo.pop()
                if name in (b"", b"."):
                    if not todo:
                        fd = stack.pop() if stack else os.dup(self.root_fd)
                        return Opened(fd, os.fstat(fd), True)
                    continue
                if name == b"/":
                    while stack:
                        os.close(stack.pop())
                    names.clear()
                    if not todo:
                        fd = os.dup(self.root_fd)
                        return Opened(fd, os.fstat(fd), True)
                    continue
                if name == b"..":
                    if not stack:
                        return None  # would climb above the root
                    os.close(stack.pop())
                    names.pop()
                    if not todo:
                        fd = stack.pop() if stack else os.dup(self.root_fd)
                        return Opened(fd, os.fstat(fd), True)
                    continue
                if not self.dotfiles and name[:1] == b".":
                    return None
                cur = stack[-1] if stack else self.root_fd
                last = not todo
                try:
                    fd = os.open(name, _LAST_FLAGS if last else _DIR_FLAGS, dir_fd=cur)
                except OSError as exc:
                    if exc.errno in EXHAUSTED:
                        raise
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        return None  # ENOENT, EACCES, ENAMETOOLONG...: all look the same from outside
                    fd = -1
                if fd >= 0:
                    st = os.fstat(fd)
                    if not stat.S_ISLNK(st.st_mode):
                        names.append(name)
                        if not last:
                            stack.append(fd)
                            continue
                        return self._finish(fd, st, name, cur)
                    os.close(fd)
                # A symlink (or a non-directory in the middle, which readlink rejects → None).
                if not self.follow_symlinks:
                    return None
                hops += 1
                if hops > MAX_SYMLINKS:
                    return None
                parts = self._link_target(name, cur)
                if parts is None:
                    return None
                todo.extend(reversed(parts))
            return None  # pragma: no cover - the loop returns on the last component
        finally:
            for fd in stack:
                os.close(fd)

    def _finish(self, fd: int, st: os.stat_result, name: bytes, dir_fd: int) -> Opened | None:
        if stat.S_ISDIR(st.st_mode):
            return Opened(fd, st, True)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None  # FIFOs, devices, sockets: only regular files are served
        try:
            # Re-open the very inode the O_PATH fd refers to: no window for a swap between fstat and open.
            rfd = os.open(f"/proc/self/fd/{fd}", _READ_FLAGS)
        except FileNotFoundError:
            # No /proc (some sandboxes): open by name, still without following links, and check below that
            # it is the inode we vetted (a swap in between → refused).
            try:
                rfd = os.open(name, _READ_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in EXHAUSTED:
                    raise
                rfd = -1
        except OSError as exc:
            if exc.errno in EXHAUSTED:
                raise
            rfd = -1
        finally:
            os.close(fd)
        if rfd < 0:
            return None
        rst = os.fstat(rfd)
        if (rst.st_dev, rst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(rst.st_mode):
            os.close(rfd)
            return None
        return Opened(rfd, rst, False)

    def list_dir(self, dir_fd: int) -> list[listing.Entry]:
        """The entries of a directory opened by open(); dotfiles hidden unless allowed. A symlink is shown as what
        it points to when links are followed (its own size and date when not, or when it dangles)."""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
        out = []
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    name = os.fsencode(entry.name)
                    if not self.dotfiles and name[:1] == b".":
                        continue
                    try:
                        try:
                            st = entry.stat(follow_symlinks=self.follow_symlinks)
                        except FileNotFoundError:  # a dangling link
                            st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    out.append(listing.Entry(name, stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime))
        finally:
            os.close(fd)
        return out
