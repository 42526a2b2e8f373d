"""zcopy.copy(): whole-file copy by the best route (direct for a large cold source, else copy_file_range →
sendfile → readwrite), written into the destination as GNU cp writes it (zcopy.dest.open_into), or published by
temp file + rename with atomic=True.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
from collections.abc import Callable

from zcopy import dest, diskrates, routes
from zcopy.routes import direct

# Copy in steps of this size when a progress callback wants updates; one step otherwise.
PROGRESS_STEP = 64 << 20


def copy(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    route: str | None = None,
    fallback: bool = True,
    metadata: bool = False,
    progress: Callable[[int, int], None] | None = None,
    atomic: bool = False,
) -> int:
    """Copy the bytes of file `src` to `dst` (a file path or an existing directory) and return the byte count.

    By default the bytes are written into dst as GNU cp writes them: through a symlink to its target, streamed into
    a device or FIFO, into an existing regular file on the same inode (its mode, owner and hard links stay). A new
    file gets src's permission bits minus the umask and is removed if the copy fails; an existing file that fails
    halfway is left partly written, as with cp. atomic=True writes a temp file beside dst and renames it over dst when
    complete (a reader sees the old file or the new one, never a part); it refuses a dst that is not a regular file.
    Only bytes are copied unless metadata=True (then mode and atime/mtime too, like shutil.copy2 minus xattrs).
    The route used is reported to `observe` (and is in `copy_result()`'s Moved if you need it directly).
    """
    return copy_result(
        src, dst, route=route, fallback=fallback, metadata=metadata, progress=progress, atomic=atomic
    ).nbytes


def copy_result(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    route: str | None = None,
    fallback: bool = True,
    metadata: bool = False,
    progress: Callable[[int, int], None] | None = None,
    atomic: bool = False,
) -> routes.Moved:
    """Like copy() but returns the Moved record (route, skipped routes and why)."""
    src_path = os.fspath(src)
    dst_path = os.fspath(dst)
    if os.path.isdir(dst_path):
        dst_path = os.path.join(dst_path, os.path.basename(src_path))
    sfd = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(sfd)
        if stat.S_ISDIR(st.st_mode):
            why = "Is a directory (copy() copies one file; copytree() copies a tree)"
            raise IsADirectoryError(errno.EISDIR, why, src_path)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(st, os.stat(dst_path)):
                raise shutil.SameFileError(f"{src_path!r} and {dst_path!r} are the same file")
        out = (dest.open_atomic if atomic else dest.open_into)(dst_path, st.st_mode)
        try:
            result = copy_into(sfd, st, out, src_path, route=route, fallback=fallback, progress=progress)
            if metadata:
                os.fchmod(out.fd, st.st_mode & 0o7777)
                os.utime(out.fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            out.finish()
        except BaseException:
            out.abandon()
            raise
    finally:
        os.close(sfd)
    return result


def copy_into(
    sfd: int,
    st: os.stat_result,
    out: dest.Destination,
    name: str,
    *,
    route: str | None = None,
    fallback: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> routes.Moved:
    """Copy the whole of open file `sfd` (whose stat is `st`) into an opened destination by the best route: direct
    for a large cold source (then fsynced), a sparse source extent by extent so its holes stay holes, else the
    table's order; into a device or FIFO as a stream. Metadata and publishing are the caller's."""
    regular = out.regular
    decision = diskrates.decide(sfd, st.st_size, out.fd) if route is None and fallback and regular else None
    prefer, why = (decision.prefer, decision.why) if decision is not None else (None, None)
    if regular and route is None and prefer is None and st.st_blocks * 512 < st.st_size:
        sparse = _copy_sparse(sfd, out.fd, st.st_size, name, fallback, progress)
        if sparse is not None:
            return sparse
    started = time.perf_counter()
    result = _copy_fds(sfd, out.fd, st.st_size, name, route, fallback, progress, prefer, why, stream=not regular)
    if result.route == direct.NAME and regular:
        # The body is on the disk already (O_DIRECT): one fsync for the tail and the metadata makes the
        # copy durable for little more, which is what a cold copy of a large file usually wants.
        os.fsync(out.fd)
    if decision is not None:
        diskrates.finish(sfd, out.fd, decision, result, started)  # keeps the rate of a measuring copy
    return result


def _copy_sparse(
    sfd: int, dfd: int, size: int, name: str, fallback: bool, progress: Callable[[int, int], None] | None
) -> routes.Moved | None:
    """Copy only the data extents of a sparse file (SEEK_DATA/SEEK_HOLE) and set the size, so the holes stay holes
    (copy_file_range on a file system without reflink writes them out as zeros). None: the file system cannot
    tell its extents (EINVAL), copy it whole."""
    first: routes.Moved | None = None
    pos = data = extents = 0
    while pos < size:
        try:
            start = os.lseek(sfd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole after pos
                break
            if exc.errno == errno.EINVAL and first is None:
                return None
            raise
        end = min(os.lseek(sfd, start, os.SEEK_HOLE), size)
        r = routes.move(
            sfd, dfd, start, end - start, route=None if first is None else first.route, fallback=fallback,
            dst_offset=start, name=name, op="copy",
        )
        first = first or r
        data += r.nbytes
        extents += 1
        if progress is not None:
            progress(end, size)
        pos = end
        if r.nbytes < end - start:  # the source ended early: move() has checked it did not shrink
            size = start + r.nbytes
            break
    os.ftruncate(dfd, size)
    if first is None:  # all holes: no byte to move, the size says it all
        first = routes.move(sfd, dfd, 0, 0, fallback=fallback, dst_offset=0, name=name, op="copy")
    first.nbytes = size
    first.reason = (f"sparse source: {data} bytes of data in {extents} extent(s) copied, "
                    f"{size - data} bytes of holes kept as holes")  # fmt: skip
    return first


def _copy_fds(
    sfd: int,
    dfd: int,
    size: int,
    name: str,
    route: str | None,
    fallback: bool,
    progress: Callable[[int, int], None] | None,
    prefer: str | None = None,
    why: str | None = None,
    stream: bool = False,
) -> routes.Moved:
    """Copy `size` bytes from offset 0 of sfd into dfd, at offset 0, or at its stream position when `stream` (a
    device or FIFO, which cannot seek)."""
    at = None if stream else 0
    if progress is None or size <= PROGRESS_STEP:
        # Size 0 may be a procfs file with data: move() then reads to EOF.
        total = size if size > 0 else (1 << 62)
        result = routes.move(
            sfd, dfd, 0, total, route=route, fallback=fallback, dst_offset=at, name=name, op="copy", prefer=prefer,
            reason=why,
        )
        if progress is not None:
            progress(result.nbytes, size)
        return result
    done = 0
    first: routes.Moved | None = None
    while done < size:
        step = min(PROGRESS_STEP, size - done)
        r = routes.move(
            sfd, dfd, done, step, route=route if first is None else first.route, fallback=fallback,
            dst_offset=None if stream else done, name=name, op="copy", prefer=prefer if first is None else None,
            reason=why,
        )
        if first is None:
            first = r
        else:
            first.nbytes += r.nbytes
        done += r.nbytes
        progress(done, size)
        if r.nbytes < step:
            break
    assert first is not None
    first.nbytes = done
    return first


def select(fd: int, size: int, dst_fd: int | None = None) -> tuple[str | None, str]:
    """Which route a whole-file copy should try first, and why: direct for a large source not in the page cache
    (probed with mincore) unless durable cold copies between these file systems were measured faster through the
    page cache (zcopy.diskrates; `dst_fd`: the target), else the table's order (copy_file_range first)."""
    decision = diskrates.decide(fd, size, dst_fd)
    return decision.prefer, decision.why
