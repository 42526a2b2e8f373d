"""Two Linux calls the receiver's batched publishing needs and Python's os module lacks: syncfs(2) and
renameat2(2) with RENAME_NOREPLACE, through ctypes (glibc >= 2.28 exports both). Each reports when it is not
available so the caller falls back (fdatasync per file; link + unlink) instead of guessing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

# linux/fs.h: RENAME_NOREPLACE = 1 << 0 (Linux >= 3.15).
RENAME_NOREPLACE = 1
# renameat2 fails with these when the file system or kernel cannot do it: fall back, it is not an answer.
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()
_SYNCFS = getattr(_LIBC, "syncfs", None)
_RENAMEAT2 = getattr(_LIBC, "renameat2", None)
if _SYNCFS is not None:
    _SYNCFS.argtypes = [ctypes.c_int]
    _SYNCFS.restype = ctypes.c_int
if _RENAMEAT2 is not None:
    _RENAMEAT2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _RENAMEAT2.restype = ctypes.c_int

HAS_SYNCFS = _SYNCFS is not None


def syncfs(fd: int) -> None:
    """Write back every dirty page and inode of the file system holding `fd`, and wait (one call for a whole
    batch of files instead of one fsync each). Raises OSError (since Linux 5.8 it reports writeback errors)."""
    if _SYNCFS is None:
        raise OSError(errno.ENOSYS, "syncfs is not available")
    if _SYNCFS(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_renameat2_works = _RENAMEAT2 is not None


def rename_noreplace(src: bytes, dst: bytes, dir_fd: int) -> bool:
    """Atomically rename `src` to `dst` in `dir_fd` unless `dst` exists (FileExistsError then). Returns False,
    having done nothing, when the kernel or file system lacks RENAME_NOREPLACE (the caller uses link + unlink)."""
    global _renameat2_works
    if not _renameat2_works:
        return False
    assert _RENAMEAT2 is not None
    if _RENAMEAT2(dir_fd, src, dir_fd, dst, RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        _renameat2_works = False
        return False
    raise OSError(err, os.strerror(err), os.fsdecode(dst))
