"""The I/O of `zcopy replace`: lock the file, map it, feed edit.scan, then edit in place or rewrite atomically.

In place (same length): changed pages are stored through a READ_WRITE mapping and msync'ed (force) range by
range. Rewrite (length changes, --safe, --regex, --backup): a temp file in the same directory receives the
unchanged spans in-kernel (routes.move: copy_file_range, falling back per the core's table) and the new bytes
from user space; fsync, atomic rename, fsync of the directory. The original is never written on that route.
"""

from __future__ import annotations

import contextlib
import glob
import mmap
import os
import stat
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from typing import Literal

from zcopy import observe as _observe
from zcopy import routes
from zcopy.channel import FileChannel, FileLock
from zcopy.edit.result import IN_PLACE, REWRITE, ReplaceResult
from zcopy.edit.scan import (
    DEFAULT_GRANULE,
    DEFAULT_WINDOW,
    Chunk,
    Spec,
    changed_blocks,
    effective_window,
    scan,
)
from zcopy.errors import NotRegularFileError, TruncatedFileError, ZeroCopyError
from zcopy.mapped import MapMode, MappedBuffer

Mode = Literal["auto", "in-place", "safe"]

# Unchanged spans at least this long move in-kernel; shorter ones are written from user space with the
# replacements around them: a routes.move call plus the pwrite of the replacement after it are two syscalls per
# gap, which cost more than copying a short gap once more in user space. 64 KiB is a chosen bound, not a measured
# crossover: `python bench/replace.py` measures the rewrite as a whole.
MIN_KERNEL_SPAN = 64 << 10

# User-space bytes for the temp file are gathered up to this much per pwritev: few syscalls, bounded memory.
WRITE_BATCH = 1 << 20

# Touched ranges closer than this are forced with one msync: msync skips clean pages cheaply, while one
# call per scattered match would cost a syscall each.
FORCE_GAP = 1 << 20

# madvise(2) MADV_POPULATE_WRITE = 23 (Linux >= 5.14; Python 3.11's mmap lacks the name): fault a range in
# writable with one call instead of one write fault per page. Used only on ranges about to be stored (it
# dirties them, exactly as the stores would). EINVAL on older kernels.
MADV_POPULATE_WRITE: int = getattr(mmap, "MADV_POPULATE_WRITE", 23)
# Below 16 pages the one madvise call is not worth making: a chosen bound (not measured).
POPULATE_MIN = 16 * DEFAULT_GRANULE

# tempfile.mkstemp's random part is 8 characters (tempfile._RandomNameSequence); stale-temp cleanup matches it.
_TEMP_RANDOM = 8

# A lock taken on a file that another `zcopy replace --safe` renamed away is stale; re-open and retry
# (each retry means another run completed, so a handful is plenty).
_LOCK_RETRIES = 8


class FileLockedError(ZeroCopyError):
    """Another process holds the file's lock and ``wait_lock=False`` was asked."""


class LengthChangeError(ZeroCopyError):
    """In-place editing was asked for a replacement that changes the file's length (or for --regex)."""


class ConcurrentModificationError(ZeroCopyError):
    """The file changed under the rewrite (someone ignored the advisory lock); the original was kept."""


Progress = Callable[[int, int], None]


def replace(
    path: str | os.PathLike[str],
    old: bytes,
    new: bytes,
    *,
    regex: bool = False,
    ignore_case: bool = False,
    count: int = 0,
    mode: Mode = "auto",
    dry_run: bool = False,
    backup: str | None = None,
    window: int = DEFAULT_WINDOW,
    min_kernel_span: int = MIN_KERNEL_SPAN,
    wait_lock: bool = True,
    progress: Progress | None = None,
) -> ReplaceResult:
    """Replace OLD by NEW in the file at ``path`` (bytes semantics of ``bytes.replace``; ``regex``: ``re.sub``).

    ``mode``: "auto" edits in place when every replacement keeps the length (literal, len(NEW) == len(OLD),
    no backup) and rewrites otherwise; "in-place" insists (LengthChangeError if impossible); "safe" always
    rewrites. ``backup``: keep the original as ``path + backup``. ``count``: at most that many replacements
    (0: all). A symlink is followed: its target is edited. Raises NotRegularFileError, FileLockedError,
    TruncatedFileError (the file shrank while being read), ConcurrentModificationError, OSError.
    """
    t0 = time.perf_counter()
    spec = Spec(old, new, regex=regex, ignore_case=ignore_case, count=count)
    real = os.path.realpath(os.fspath(path))
    st = os.stat(real)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(f"{os.fspath(path)}: not a regular file; replace edits regular files only")
    if mode not in ("auto", "in-place", "safe"):
        raise ValueError(f"mode must be auto, in-place or safe, not {mode!r}")
    if mode == "in-place" and not spec.same_length:
        why = "--regex replacements may change length" if regex else "NEW and OLD differ in length"
        raise LengthChangeError(f"cannot edit in place: {why}; use --safe (a rewrite)")
    in_place = mode == "in-place" or (mode == "auto" and spec.same_length and backup is None)
    result = ReplaceResult(os.fspath(path), dry_run=dry_run)
    try:
        ch, lock = _open_locked(real, writable=in_place and not dry_run, wait=wait_lock, read_only=dry_run)
    except PermissionError:
        if mode != "auto" or not in_place:
            raise
        # A read-only file in a writable directory: like sed -i, replace it by a rewrite.
        in_place = False
        ch, lock = _open_locked(real, writable=False, wait=wait_lock)
    try:
        size = ch.size()
        result.size_before = result.size_after = size
        mapping = _map(ch, size, MapMode.READ_WRITE if in_place and not dry_run else MapMode.READ_ONLY)
        if mapping is None and size and in_place:
            in_place = False  # a regular file mmap refuses (some FUSE, procfs): rewrite with pread instead
        if regex and mapping is None and size:
            raise ZeroCopyError(f"{real}: cannot be mapped, and --regex scans the mapping")
        # Windows with more matches than this are handed over whole (bulk, built in C) rather than match by
        # match. In place: more than one match per page on average means every page is stored anyway.
        # Rewrite: more than window / min_kernel_span matches means the average unchanged span is too short
        # to be worth an in-kernel move.
        eff = effective_window(spec, window)
        sparse = eff // DEFAULT_GRANULE if in_place else (eff // min_kernel_span if min_kernel_span else eff)
        chunks = _chunks(spec, ch, mapping, size, window, sparse, progress)
        try:
            if dry_run:
                _count(chunks, spec, result)
                if result.matches:
                    result.route = IN_PLACE if in_place else REWRITE  # the route a real run would take
            elif in_place:
                if backup:
                    result.backup = _backup_copy(real, backup)
                _edit_in_place(chunks, spec, ch, mapping, result)
            else:
                _rewrite(chunks, spec, ch, mapping, real, st, backup, min_kernel_span, result)
        finally:
            # A scan stopped by an error still holds re's export of the mapping: end it before unmapping.
            chunks.close()
            if mapping is not None:
                mapping.close()
    finally:
        lock.release()
        ch.close()
    result.wall_s = time.perf_counter() - t0
    return result


def _open_locked(real: str, writable: bool, wait: bool, read_only: bool = False) -> tuple[FileChannel, FileLock]:
    """Open ``real`` and take its advisory lock: exclusive when we can open it for writing, shared when it can
    only be read (or ``read_only``, for a dry run: it waits for writers but not for other readers).

    A rewrite replaces the inode, so a lock obtained after another run renamed its result over ``real`` is on
    a dead inode: detect that (path no longer names our inode) and start again on the new file.
    """
    for _ in range(_LOCK_RETRIES):
        try:
            ch = FileChannel.open(real, "r" if read_only else "r+")
        except PermissionError:
            if writable:
                raise
            ch = FileChannel.open(real, "r")  # read-only file in a writable directory: rewrite still works
        try:
            lk = ch.try_lock(shared=not ch.writable)
            if lk is None:
                if not wait:
                    raise FileLockedError(f"{real}: locked by another process (advisory lock)")
                lk = ch.lock(shared=not ch.writable)
            fst, pst = os.fstat(ch.fileno()), os.stat(real)
            if (fst.st_dev, fst.st_ino) == (pst.st_dev, pst.st_ino):
                return ch, lk
            lk.release()
        except BaseException:
            ch.close()
            raise
        ch.close()
    raise FileLockedError(f"{real}: replaced by other processes {_LOCK_RETRIES} times while waiting for its lock")


def _map(ch: FileChannel, size: int, mode: MapMode) -> MappedBuffer | None:
    if size == 0:
        return None  # mmap(2) cannot map 0 bytes; an empty file is scanned as b""
    try:
        m = ch.map(mode)
    except (OSError, ValueError):
        return None
    # One pass front to back: read ahead aggressively, and let the kernel drop pages behind us.
    with contextlib.suppress(OSError):
        m.advise(mmap.MADV_SEQUENTIAL)
    return m


def _chunks(
    spec: Spec,
    ch: FileChannel,
    mapping: MappedBuffer | None,
    size: int,
    window: int,
    sparse_limit: int,
    progress: Progress | None,
) -> Generator[Chunk, None, None]:
    """scan() over the mapping (or pread when unmappable), checking before each window that the file did not
    shrink: touching a mapped page past EOF is SIGBUS, which Python cannot catch. ``progress(offset, size)``
    runs just before each window is read."""
    fd = ch.fileno()

    def check(a: int, b: int) -> None:
        if progress is not None:
            progress(a, size)
        now = os.fstat(fd).st_size
        if now < b:
            raise TruncatedFileError(ch.name, min(now, a), b, a)

    def read_mapped(a: int, b: int) -> bytes:
        check(a, b)
        assert mapping is not None
        data: bytes = mapping[a:b]
        return data

    def read_pread(a: int, b: int) -> bytes:
        if progress is not None:
            progress(a, size)
        data = os.pread(fd, b - a, a)
        if len(data) != b - a:
            raise TruncatedFileError(ch.name, a + len(data), b, a)
        return data

    buf: object = mapping if mapping is not None else b""
    read = read_mapped if mapping is not None else read_pread
    for chunk in scan(spec, buf, size, window=window, read=read, sparse_limit=sparse_limit):
        if spec.regex and chunk.end > chunk.start:
            check(chunk.start, chunk.end)  # re read the mapping itself; make sure it is still all there
        yield chunk
    if progress is not None:
        progress(size, size)


def _replaced_bytes(chunk: Chunk, spec: Spec) -> int:
    if chunk.edits is not None:
        return sum(e.end - e.start for e in chunk.edits)
    return chunk.matches * len(spec.old) if chunk.replaced is None else chunk.replaced


def _count(chunks: Iterator[Chunk], spec: Spec, result: ReplaceResult) -> None:
    for chunk in chunks:
        result.matches += chunk.matches
        result.bytes_replaced += _replaced_bytes(chunk, spec)
        result.size_after += chunk.delta


def _edit_in_place(
    chunks: Iterator[Chunk], spec: Spec, ch: FileChannel, mapping: MappedBuffer | None, result: ReplaceResult
) -> None:
    """Store only the changed pages (bulk windows) or the changed matches (sparse ones), then force them."""
    touched: list[list[int]] = []
    populate = True

    def mark(lo: int, hi: int) -> None:
        if touched and lo - touched[-1][1] <= FORCE_GAP:
            touched[-1][1] = hi
        else:
            touched.append([lo, hi])

    for chunk in chunks:
        if not chunk.matches:
            continue
        assert mapping is not None
        result.matches += chunk.matches
        result.bytes_replaced += _replaced_bytes(chunk, spec)
        if chunk.edits is not None:
            for e in chunk.edits:
                if mapping[e.start : e.end] != e.new:  # ignore-case may match text already equal to NEW
                    mapping[e.start : e.end] = e.new
                    result.user_bytes += len(e.new)
                    mark(e.start, e.end)
        else:
            new = memoryview(chunk.new)
            for lo, hi in changed_blocks(chunk.old, chunk.new, chunk.end - chunk.start, chunk.start,
                                         DEFAULT_GRANULE):
                if populate and hi - lo >= POPULATE_MIN:
                    try:
                        mapping.advise(MADV_POPULATE_WRITE, chunk.start + lo, hi - lo)
                    except OSError:
                        populate = False  # kernel < 5.14: plain write faults
                mapping[chunk.start + lo : chunk.start + hi] = new[lo:hi]
                result.user_bytes += hi - lo
                mark(chunk.start + lo, chunk.start + hi)
            new.release()
    for lo, hi in touched:
        mapping.force(lo, hi - lo)  # type: ignore[union-attr]  # touched is empty without a mapping
    result.forced_ranges = len(touched)
    if touched:
        result.route = IN_PLACE
        # Stores into a mapping are no syscalls, so no core function saw them: report them to observe here
        # (the msyncs are reported by MappedBuffer.force itself).
        _observe.record("replace", "mmap", result.user_bytes, user_bytes=result.user_bytes)


class _TempWriter:
    """Appends to the temp file: source ranges in-kernel (routes.move), new bytes gathered into pwritev."""

    def __init__(self, src: FileChannel, dst: FileChannel, result: ReplaceResult) -> None:
        self.src, self.dst, self.result = src, dst, result
        self.out = 0
        self.kernel: list[int] | None = None  # pending [start, end) of the source
        self.user: list[bytes | memoryview] = []
        self.user_len = 0

    def span(self, a: int, b: int) -> None:
        if self.kernel is not None and self.kernel[1] == a:
            self.kernel[1] = b
            return
        self.flush_user()
        self.flush_kernel()
        self.kernel = [a, b]

    def data(self, piece: bytes | memoryview) -> None:
        if self.kernel is not None:
            self.flush_kernel()
        self.user.append(piece)
        self.user_len += len(piece)
        if self.user_len >= WRITE_BATCH:
            self.flush_user()

    def flush_kernel(self) -> None:
        if self.kernel is None:
            return
        a, b = self.kernel
        self.kernel = None
        moved = routes.move(self.src.fileno(), self.dst.fileno(), a, b - a, dst_offset=self.out,
                            name=self.src.name, op="replace")
        if moved.nbytes != b - a:
            raise TruncatedFileError(self.src.name, a + moved.nbytes, b, moved.nbytes)
        self.out += moved.nbytes
        self.result.kernel_bytes += moved.nbytes
        if moved.route not in self.result.kernel_routes:
            self.result.kernel_routes.append(moved.route)

    def flush_user(self) -> None:
        if not self.user:
            return
        # One buffer per write: thousands of small iovecs (a replacement, a short gap, ...) cost more to gather
        # than one memcpy of the batch.
        buf = self.user[0] if len(self.user) == 1 else b"".join(self.user)
        n = self.dst.write(buf, self.out)
        self.out += n
        self.result.user_bytes += n
        self.user, self.user_len = [], 0

    def close(self) -> int:
        self.flush_user()
        self.flush_kernel()
        return self.out


def _rewrite(
    chunks: Iterator[Chunk],
    spec: Spec,
    ch: FileChannel,
    mapping: MappedBuffer | None,
    real: str,
    st: os.stat_result,
    backup: str | None,
    min_kernel_span: int,
    result: ReplaceResult,
) -> None:
    """Build the new content in a temp file beside ``real``, then rename it over ``real``.

    Nothing touches ``real`` until the rename, and rename(2) is atomic: a crash at any point leaves either
    the old file or the new one (plus, at worst, a stale ``.NAME.*.zcopy-tmp`` that the next rewrite removes).
    """
    directory, base = os.path.split(real)
    before = os.fstat(ch.fileno())
    if ch.writable:
        _remove_stale_temps(directory, base)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".zcopy-tmp")
    renamed = False
    try:
        try:
            with FileChannel(fd, own=True, name=tmp) as dst:
                w = _TempWriter(ch, dst, result)
                for chunk in chunks:
                    result.matches += chunk.matches
                    result.bytes_replaced += _replaced_bytes(chunk, spec)
                    for piece in chunk.output():
                        if not isinstance(piece, tuple):
                            w.data(piece)
                        elif piece[1] - piece[0] >= min_kernel_span or mapping is None:
                            w.span(*piece)
                        else:
                            w.data(mapping[piece[0] : piece[1]])
                result.size_after = w.close()
                if result.matches == 0:
                    return  # nothing to change: leave the original alone (the temp file is removed below)
                _copy_metadata(dst.fileno(), st)
                dst.force()
        except OSError as exc:
            # ENOSPC, EFBIG, EIO...: say that nothing was published (the temp file goes below).
            raise OSError(exc.errno, f"{exc.strerror} during the rewrite; the file was not changed",
                          real) from exc
        after = os.fstat(ch.fileno())
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise ConcurrentModificationError(
                f"{real} changed while it was being rewritten (size {before.st_size} → {after.st_size}); "
                "the original was left as the other writer made it"
            )
        if backup:
            result.backup = _backup_link(real, backup)
        os.rename(tmp, real)
        renamed = True
        _fsync_dir(directory)
        result.route = REWRITE
    finally:
        if not renamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _remove_stale_temps(directory: str, base: str) -> None:
    """Delete temp files that killed runs left for this file. Safe only under the exclusive lock: every run
    builds its temp file while holding that lock on the current inode, so no live run can own one now."""
    pattern = os.path.join(glob.escape(directory), f".{glob.escape(base)}.{'[!.]' * _TEMP_RANDOM}.zcopy-tmp")
    for stale in glob.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)


def _copy_metadata(fd: int, st: os.stat_result) -> None:
    """Policy: keep permission bits and (where allowed) owner and group; mtime becomes now, as the content
    changed. When the owner cannot be kept, set-user/group-ID bits are dropped (never grant them to us)."""
    bits = stat.S_IMODE(st.st_mode)
    try:
        if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            os.fchown(fd, st.st_uid, st.st_gid)
    except PermissionError:
        try:
            os.fchown(fd, -1, st.st_gid)
            bits &= ~stat.S_ISUID
        except PermissionError:
            bits &= ~(stat.S_ISUID | stat.S_ISGID)
    os.fchmod(fd, bits)


def _backup_link(real: str, suffix: str) -> str:
    """The untouched original inode becomes the backup: a hard link, no data copied, replaced atomically."""
    target = real + suffix
    tmp = f"{target}.zcopy-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(real, tmp)
    except OSError:
        return _backup_copy(real, suffix)  # filesystems without hard links
    os.rename(tmp, target)
    return target


def _backup_copy(real: str, suffix: str) -> str:
    """In-place edits change the inode itself, so the backup must be a copy (in-kernel, via zcopy.copy)."""
    from zcopy.fastcopy import copy

    target = real + suffix
    tmp = f"{target}.zcopy-tmp"
    copy(real, tmp, metadata=True)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(tmp, target)
    _fsync_dir(os.path.dirname(target))
    return target


def _fsync_dir(directory: str) -> None:
    dfd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
