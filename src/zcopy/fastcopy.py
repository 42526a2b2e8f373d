"""zcopy.copy(): whole-file copy by the best route (copy_file_range → sendfile → readwrite), never a partial
file under the destination name when it fails halfway (the copy goes to a temp name, then is renamed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable

from zcopy import pagecache, routes
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
) -> int:
    """Copy the bytes of file `src` to `dst` (a file path or an existing directory) and return the byte count.

    Only bytes are copied unless metadata=True (then mode and atime/mtime too, like shutil.copy2 minus xattrs).
    The data goes to a temporary file beside dst which is renamed over dst only when complete.
    The route used is reported to `observe` (and is in `copy_result()`'s Moved if you need it directly).
    """
    return copy_result(src, dst, route=route, fallback=fallback, metadata=metadata, progress=progress).nbytes


def copy_result(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    route: str | None = None,
    fallback: bool = True,
    metadata: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> routes.Moved:
    """Like copy() but returns the Moved record (route, skipped routes and why)."""
    src_path = os.fspath(src)
    dst_path = os.fspath(dst)
    if os.path.isdir(dst_path):
        dst_path = os.path.join(dst_path, os.path.basename(src_path))
    sfd = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(sfd)
        if os.path.exists(dst_path) and os.path.samestat(st, os.stat(dst_path)):
            raise shutil.SameFileError(f"{src_path!r} and {dst_path!r} are the same file")
        prefer, why = select(sfd, st.st_size) if route is None and fallback else (None, None)
        parent = os.path.dirname(os.path.abspath(dst_path))
        tfd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dst_path)}.", suffix=".zcopy-tmp", dir=parent)
        try:
            result = _copy_fds(sfd, tfd, st.st_size, src_path, route, fallback, progress, prefer, why)
            if result.route == direct.NAME:
                # The body is on the disk already (O_DIRECT): one fsync for the tail and the metadata makes the
                # copy durable for little more, which is what a cold copy of a large file usually wants.
                os.fsync(tfd)
            if metadata:
                os.fchmod(tfd, st.st_mode & 0o7777)
                os.utime(tfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                # A fresh file: the umask-default mode a plain open() would give, not mkstemp's 0600.
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(tfd, 0o666 & ~umask)
            os.close(tfd)
            tfd = -1
            os.replace(tmp, dst_path)
        except BaseException:
            if tfd >= 0:
                os.close(tfd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    finally:
        os.close(sfd)
    return result


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
) -> routes.Moved:
    if progress is None or size <= PROGRESS_STEP:
        # Size 0 may be a procfs file with data: move() then reads to EOF.
        total = size if size > 0 else (1 << 62)
        result = routes.move(
            sfd, dfd, 0, total, route=route, fallback=fallback, dst_offset=0, name=name, op="copy", prefer=prefer,
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
            dst_offset=done, name=name, op="copy", prefer=prefer if first is None else None, reason=why,
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


def select(fd: int, size: int) -> tuple[str | None, str]:
    """Which route a whole-file copy should try first, and why: direct for a large source not in the page cache
    (probed with mincore), else the table's order (copy_file_range first)."""
    if size < direct.THRESHOLD:
        return None, direct.choose(size, None)[1]
    use, why = direct.choose(size, pagecache.residency(fd).fraction)
    return (direct.NAME if use else None), why
