"""zcopy.copytree() and `zcopy cp -r/-a`: copy directory trees, each file by its best route.

Three phases. The walk (one thread, scandir + one lstat per entry) creates the directories, symlinks and special
files (FIFOs, devices, sockets are made anew, as `cp -r` makes them) and lists the regular files; a small pool of
threads then copies the files (each through fastcopy.copy_into: copy_file_range or reflink, direct for a large cold
file, extent by extent for a sparse one), their system calls overlapping since each releases the GIL; last, hard
links are linked and each directory gets its metadata, deepest first (its mtime after its last entry was written).

With metadata (`cp -a`): mode, owner (when allowed), atime/mtime, extended attributes (where both file systems have
them) and hard links kept as hard links. Without (`cp -r`): new files and directories get the source's permission
bits minus the umask, symlinks are still copied as links.

Existing destination entries are handled as GNU cp handles them: a file is written into (zcopy.dest.open_into: the
same inode, through a symlink to its target), a directory is merged, a non-directory where a directory goes is an
error for that entry. Per-entry errors (unreadable, vanished...) are collected with their paths and the copy goes
on; ENOSPC (or EDQUOT) stops it at once. `sync=True` ends with one syncfs(2) per destination file system instead of
one fsync per file.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import itertools
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterable

from zcopy import dest, fastcopy
from zcopy.errors import ZeroCopyError

# Worker threads copying files. Each file is ~7 system calls; the kernel part runs without the GIL.
THREADS = 4
# Small files a worker takes at a time (one lock round and one progress call per batch).
BATCH = 32
# After Ctrl-C, how long to wait (seconds, per thread) for the workers to finish the file each is copying.
INTERRUPT_GRACE = 2.0
# A file this big is a work item of its own.
LARGE = 1 << 20
# Errors that stop the whole copy instead of being collected: nothing after them could succeed.
FATAL = frozenset({errno.ENOSPC, errno.EDQUOT})

# on_progress(files_done, files_total, bytes_done, bytes_total); called from worker threads, one at a time.
OnProgress = Callable[[int, int, int, int], None]


class TreeCopied(int):
    """The bytes copied (an int, like zcopy.copy's result), with the totals as attributes: files, dirs, symlinks,
    hardlinks, specials, routes ({route: [files, bytes]}), errors ([(src, dst, reason)])."""

    files: int
    dirs: int
    symlinks: int
    hardlinks: int
    specials: int
    routes: dict[str, list[int]]
    errors: list[tuple[str, str, str]]

    def totals(self) -> dict[str, object]:
        return {
            "bytes": int(self), "files": self.files, "dirs": self.dirs, "symlinks": self.symlinks,
            "hardlinks": self.hardlinks, "specials": self.specials,
            "routes": {r: {"files": f, "bytes": b} for r, (f, b) in sorted(self.routes.items())},
        }  # fmt: skip


class CopyTreeError(shutil.Error):
    """Some entries could not be copied (the rest were): args[0] is the list of (src, dst, reason), as
    shutil.copytree's Error; `result` holds the totals of what was copied."""

    def __init__(self, errors: list[tuple[str, str, str]], result: TreeCopied) -> None:
        super().__init__(errors)
        self.result = result


class Stopped(OSError):
    """A fatal error (ENOSPC) stopped the copy: the OSError of the entry where it happened, with `result`."""

    result: TreeCopied


def copytree(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    metadata: bool = True,
    sync: bool = False,
    on_progress: OnProgress | None = None,
    dirs_exist_ok: bool = False,
    route: str | None = None,
    fallback: bool = True,
    threads: int = THREADS,
) -> TreeCopied:
    """Copy the directory tree `src` to `dst` (created; like shutil.copytree, FileExistsError if it exists unless
    dirs_exist_ok). Returns the bytes copied as a TreeCopied int with the totals. metadata=True is `cp -a`, False is
    `cp -r` (see the module docstring). Raises CopyTreeError at the end if some entries failed (each with its
    reason), OSError with ENOSPC/EDQUOT at once, ValueError for a dst inside src."""
    src_path, dst_path = os.fspath(src), os.fspath(dst)
    if not os.path.isdir(src_path) or os.path.islink(src_path):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory (copytree copies a directory)", src_path)
    if os.path.lexists(dst_path) and not dirs_exist_ok:
        raise FileExistsError(errno.EEXIST, "File exists", dst_path)
    problem = inside_itself(src_path, dst_path)
    if problem is not None:
        raise ValueError(problem)
    os.makedirs(os.path.dirname(os.path.abspath(dst_path)), exist_ok=True)  # as shutil.copytree does
    copier = Copier(metadata=metadata, route=route, fallback=fallback, threads=threads, on_progress=on_progress)
    result = copier.run([(src_path, dst_path)], sync=sync)
    if result.errors:
        raise CopyTreeError(result.errors, result)
    return result


def inside_itself(src: str, dst: str) -> str | None:
    """Why copying directory `src` to `dst` would copy it into itself (the message cp gives), or None."""
    real_src = os.path.realpath(src)
    real_dst = os.path.realpath(dst)
    if real_dst == real_src or real_dst.startswith(real_src.rstrip(os.sep) + os.sep):
        return f"cannot copy a directory, {src!r}, into itself, {dst!r}"
    return None


def batches(files: list[tuple[str, str, os.stat_result]]) -> list[list[tuple[str, str, os.stat_result]]]:
    """Pure: the files (in walk order) cut into the work items of the pool. Each large file is an item of its own
    and comes first, so the longest copies start early; the small ones are cut into runs of BATCH within one
    directory, taken from the directories in turn, so that workers create files in different directories (a
    directory's creations are serialized by its lock)."""
    large = [[f] for f in files if f[2].st_size >= LARGE]
    per_dir: dict[str, list[tuple[str, str, os.stat_result]]] = {}
    for f in files:
        if f[2].st_size < LARGE:
            per_dir.setdefault(os.path.dirname(f[1]), []).append(f)
    runs = [[fs[i : i + BATCH] for i in range(0, len(fs), BATCH)] for fs in per_dir.values()]
    return large + [r for turn in itertools.zip_longest(*runs) for r in turn if r]


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class Copier:
    """One tree copy: walk, copy the files with a pool of threads, then hard links and directory metadata."""

    def __init__(
        self,
        *,
        metadata: bool,
        route: str | None = None,
        fallback: bool = True,
        threads: int = THREADS,
        on_progress: OnProgress | None = None,
    ) -> None:
        self.metadata = metadata
        self.route = route
        self.fallback = fallback
        self.threads = max(1, threads)
        self.on_progress = on_progress
        umask = os.umask(0)
        os.umask(umask)
        self.umask = umask
        self.euid, self.egid = os.geteuid(), os.getegid()
        self.files: list[tuple[str, str, os.stat_result]] = []
        self.dirs: list[tuple[str, str, os.stat_result]] = []  # (src, dst, source stat), in creation order
        self.links: list[tuple[str, str, str]] = []  # (src, first dst of the inode, dst)
        self.seen: dict[tuple[int, int], str] = {}  # (dev, ino) of a multiply linked file → its first dst
        self.errors: list[tuple[str, str, str]] = []
        self.routes: dict[str, list[int]] = {}
        self.counts = {"dirs": 0, "symlinks": 0, "hardlinks": 0, "specials": 0}
        self.fatal: OSError | None = None
        self.files_done = self.bytes_done = self.bytes_total = 0
        self.dst_devs: dict[int, str] = {}  # st_dev → a directory on it (for syncfs)
        self._lock = threading.Lock()
        self._next = 0
        self.batches: list[list[tuple[str, str, os.stat_result]]] = []
        self.crashed: BaseException | None = None
        self.early_writeback = False

    # The walk ------------------------------------------------------------------------------------------------

    def run(self, pairs: Iterable[tuple[str, str]], *, sync: bool = False, follow: bool = False) -> TreeCopied:
        """Copy each (src, dst) pair, src being any kind of entry (a directory is copied whole); `follow`: a src
        that is a symlink is copied as what it points to (inside a tree, symlinks are always copied as links)."""
        for src, dst in pairs:
            try:
                st = os.stat(src) if follow else os.lstat(src)
                if follow and os.path.islink(src):  # files are opened with O_NOFOLLOW: open what it points to
                    src = os.path.realpath(src)
            except OSError as exc:
                self.error(src, dst, f"cannot stat: {_reason(exc)}")
                continue
            if sync:  # the file system each top-level entry lands on (a directory adds its own as it is made)
                parent = os.path.dirname(os.path.abspath(dst))
                with contextlib.suppress(OSError):
                    self.dst_devs.setdefault(os.stat(parent).st_dev, parent)
            self.entry(src, dst, st)
            if self.fatal is not None:
                break
        self.early_writeback = sync
        if self.fatal is None:
            self.copy_files()
        if self.fatal is None:
            self.link_hard_links()
            self.finish_dirs()
        if self.fatal is None and sync:
            self.sync()
        result = self.result()
        if self.fatal is not None:
            stopped = Stopped(self.fatal.errno, self.fatal.strerror, self.fatal.filename)
            stopped.result = result
            raise stopped
        return result

    def error(self, src: str, dst: str, reason: str) -> None:
        with self._lock:
            self.errors.append((src, dst, reason))

    def check(self, exc: OSError, src: str, dst: str, what: str) -> None:
        """Record a per-entry error, or stop everything for a fatal one."""
        if exc.errno in FATAL:
            with self._lock:
                if self.fatal is None:
                    self.fatal = OSError(exc.errno, exc.strerror, dst)
            return
        self.error(src, dst, f"{what}: {_reason(exc)}")

    def entry(self, src: str, dst: str, st: os.stat_result) -> None:
        mode = st.st_mode
        try:
            if stat.S_ISDIR(mode):
                self.directory(src, dst, st)
            elif stat.S_ISREG(mode):
                if self.metadata and st.st_nlink > 1:
                    first = self.seen.get((st.st_dev, st.st_ino))
                    if first is not None:
                        self.links.append((src, first, dst))
                        return
                    self.seen[(st.st_dev, st.st_ino)] = dst
                self.files.append((src, dst, st))
                self.bytes_total += st.st_size
            elif stat.S_ISLNK(mode):
                self.symlink(src, dst, st)
            else:
                self.special(dst, st)
        except OSError as exc:
            self.check(exc, src, dst, "cannot copy")

    def directory(self, src: str, dst: str, st: os.stat_result) -> None:
        try:
            # Owner-writable while it is filled (a read-only source directory too); its own mode comes at the end.
            os.mkdir(dst, (st.st_mode & 0o777) | 0o700)
        except FileExistsError:
            if not os.path.isdir(dst):
                self.error(src, dst, "cannot overwrite a non-directory with a directory")
                return
            if self.metadata:  # cp -a gives a merged directory the source's metadata too
                self.dirs.append((src, dst, st))
        else:
            self.counts["dirs"] += 1
            self.dirs.append((src, dst, st))
        self.dst_devs.setdefault(os.stat(dst).st_dev, dst)
        try:
            entries = list(os.scandir(src))
        except OSError as exc:
            self.check(exc, src, dst, "cannot read directory")
            return
        for e in entries:
            if self.fatal is not None:
                return
            s, d = e.path, os.path.join(dst, e.name)
            try:
                est = e.stat(follow_symlinks=False)
            except OSError as exc:
                self.check(exc, s, d, "cannot stat")
                continue
            self.entry(s, d, est)

    def symlink(self, src: str, dst: str, st: os.stat_result) -> None:
        target = os.readlink(src)
        try:
            os.symlink(target, dst)
        except FileExistsError:
            if os.path.isdir(dst) and not os.path.islink(dst):
                self.error(src, dst, "cannot overwrite a directory with a symlink")
                return
            os.unlink(dst)  # cp replaces an existing non-directory with the link
            os.symlink(target, dst)
        self.counts["symlinks"] += 1
        if self.metadata:
            self.owner(dst, st, follow=False)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def special(self, dst: str, st: os.stat_result) -> None:
        """A FIFO, device or socket is made anew (cp -r does not read a FIFO or a device)."""
        try:
            os.mknod(dst, st.st_mode, st.st_rdev)
        except FileExistsError:
            if os.path.isdir(dst) and not os.path.islink(dst):
                raise IsADirectoryError(errno.EISDIR, "cannot overwrite a directory", dst) from None
            os.unlink(dst)
            os.mknod(dst, st.st_mode, st.st_rdev)
        self.counts["specials"] += 1
        if self.metadata:
            self.owner(dst, st, follow=False)
            os.chmod(dst, st.st_mode & 0o7777)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))

    # The files -----------------------------------------------------------------------------------------------

    def copy_files(self) -> None:
        self.batches = batches(self.files)
        n = min(self.threads, len(self.batches))
        if n <= 1:
            self.work()
            return
        # Each worker runs in a copy of this thread's context, so an active zcopy.observe() sees its copies too.
        # Daemon threads: one blocked for good (opening a FIFO nobody reads, as cp would block) must not keep the
        # process alive after Ctrl-C.
        workers = [
            threading.Thread(
                target=contextvars.copy_context().run, args=(self.worker,), name=f"zcopy-tree-{i}", daemon=True
            )
            for i in range(n)
        ]
        for w in workers:
            w.start()
        try:
            for w in workers:
                w.join()
        except BaseException:  # Ctrl-C lands here, in the main thread: stop the workers after their current file
            with self._lock:
                self.fatal = self.fatal or OSError(errno.EINTR, "interrupted")
            for w in workers:
                w.join(INTERRUPT_GRACE)
            raise
        if self.crashed is not None:
            raise self.crashed

    def worker(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # a bug, MemoryError...: stop the others and re-raise it in the caller
            with self._lock:
                self.crashed = exc
                self.fatal = self.fatal or OSError(errno.ECANCELED, f"a copying thread failed: {exc!r}")

    def work(self) -> None:
        total = len(self.files)
        while self.fatal is None:
            with self._lock:
                i = self._next
                self._next = i + 1
            if i >= len(self.batches):
                return
            batch = self.batches[i]
            done = 0
            for src, dst, st in batch:
                if self.fatal is not None:
                    return
                done += self.copy_file(src, dst, st)
            with self._lock:
                self.files_done += len(batch)
                self.bytes_done += done
                if self.on_progress is not None:
                    self.on_progress(self.files_done, total, self.bytes_done, self.bytes_total)

    def copy_file(self, src: str, dst: str, st: os.stat_result) -> int:
        """Copy one regular file; errors are recorded (or stop the copy). Returns the bytes copied."""
        try:
            sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            self.check(exc, src, dst, "cannot open for reading")
            return 0
        try:
            try:
                out = dest.Destination(
                    os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, st.st_mode & 0o777), dst,
                    dest.NEW,
                )
            except FileExistsError:
                out = dest.open_into(dst, st.st_mode)
        except dest.DestinationRefused as exc:
            os.close(sfd)
            self.error(src, dst, exc.reason)
            return 0
        except OSError as exc:
            os.close(sfd)
            self.check(exc, src, dst, "cannot create")
            return 0
        try:
            moved = fastcopy.copy_into(sfd, st, out, src, route=self.route, fallback=self.fallback)
            if self.early_writeback and st.st_size >= LARGE and moved.route != "direct" and out.regular:
                # --sync: start writing this large file back now, while the pool copies the rest, so that the
                # final syncfs waits for less (a hint: it does not wait, and an error here is syncfs's to report).
                start_writeback(out.fd)
            if self.metadata:
                self.file_metadata(sfd, out, st)
            out.finish()
        except OSError as exc:
            out.abandon()
            self.check(exc, src, dst, "cannot copy")
            return 0
        except (ZeroCopyError, ValueError) as exc:  # a forced route that cannot serve, a file that shrank
            out.abandon()
            self.error(src, dst, str(exc))
            return 0
        finally:
            os.close(sfd)
        with self._lock:
            tally = self.routes.setdefault(moved.route, [0, 0])
            tally[0] += 1
            tally[1] += moved.nbytes
        return moved.nbytes

    def file_metadata(self, sfd: int, out: dest.Destination, st: os.stat_result) -> None:
        fd = out.fd
        self.owner(fd, st)
        mode = st.st_mode & 0o7777
        # A new file was created with the source's bits minus the umask: chmod only when that lost something.
        if out.kind != dest.NEW or mode != mode & 0o777 & ~self.umask:
            os.fchmod(fd, mode)
        copy_xattrs(sfd, fd)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def owner(self, target: int | str, st: os.stat_result, follow: bool = True) -> None:
        """chown to the source's owner when it differs and we may (root); cp -a ignores EPERM likewise."""
        if (st.st_uid, st.st_gid) == (self.euid, self.egid):
            return
        with contextlib.suppress(PermissionError):
            if isinstance(target, int):
                os.fchown(target, st.st_uid, st.st_gid)
            else:
                os.chown(target, st.st_uid, st.st_gid, follow_symlinks=follow)

    # The end -------------------------------------------------------------------------------------------------

    def link_hard_links(self) -> None:
        for src, first, dst in self.links:
            try:
                try:
                    os.link(first, dst)
                except FileExistsError:
                    os.unlink(dst)
                    os.link(first, dst)
            except OSError as exc:
                self.check(exc, src, dst, "cannot create hard link")
                if self.fatal is not None:
                    return
                continue
            self.counts["hardlinks"] += 1

    def finish_dirs(self) -> None:
        """Each new directory's final mode (and with metadata: owner, xattrs, times), deepest first."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        for src, dst, st in reversed(self.dirs):
            try:
                if self.metadata:
                    self.owner(dst, st)
                    os.chmod(dst, st.st_mode & 0o7777)
                    sfd = os.open(src, flags)
                    try:
                        dfd = os.open(dst, flags)
                        try:
                            copy_xattrs(sfd, dfd)
                            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
                        finally:
                            os.close(dfd)
                    finally:
                        os.close(sfd)
                elif (st.st_mode & 0o777 & ~self.umask) != ((st.st_mode & 0o777) | 0o700) & ~self.umask:
                    os.chmod(dst, st.st_mode & 0o777 & ~self.umask)
            except OSError as exc:
                self.check(exc, src, dst, "cannot set directory metadata")

    def sync(self) -> None:
        """One syncfs per destination file system: the whole tree durable, no fsync per file."""
        from zcopy.transfer.durable import syncfs

        for where in self.dst_devs.values():
            fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                syncfs(fd)
            except OSError as exc:
                self.check(exc, where, where, "syncfs failed")
            finally:
                os.close(fd)

    def result(self) -> TreeCopied:
        r = TreeCopied(sum(b for _, b in self.routes.values()))
        r.files = sum(f for f, _ in self.routes.values())
        r.dirs = self.counts["dirs"]
        r.symlinks = self.counts["symlinks"]
        r.hardlinks = self.counts["hardlinks"]
        r.specials = self.counts["specials"]
        r.routes = self.routes
        r.errors = self.errors
        return r


_sync_file_range: Callable[[int, int, int, int], int] | None = None
SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h


def start_writeback(fd: int) -> None:
    """sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE): queue the file's dirty pages for writeback and return
    without waiting (Python's os lacks it: ctypes, loaded on first use; a no-op where libc has no such call)."""
    global _sync_file_range
    if _sync_file_range is None:
        import ctypes
        import ctypes.util

        func = getattr(ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True), "sync_file_range", None)
        if func is None:
            _sync_file_range = lambda *_: 0  # noqa: E731
            return
        func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        func.restype = ctypes.c_int
        _sync_file_range = func
    _sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


def copy_xattrs(sfd: int, dfd: int) -> None:
    """Copy the extended attributes of one open file to another; a file system without them is not an error."""
    try:
        names = os.listxattr(sfd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        try:
            os.setxattr(dfd, name, os.getxattr(sfd, name))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise

