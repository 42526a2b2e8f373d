"""Route `copy_file_range`: copy_file_range(2) (Linux 4.5; cross-filesystem 5.3–5.18, EXDEV again since 5.19).
The kernel copies page cache to page cache, or shares blocks (reflink on btrfs/XFS, server-side copy on NFS/SMB).
"""

from __future__ import annotations

import errno
import fcntl
import os

from zcopy import _sys
from zcopy.routes._base import CPU, CopyModel, GiveUp, Hop, Status, Tally, build_model, give_up_or_raise

NAME = "copy_file_range"


def check(src_kind: str, dst_kind: str) -> str | None:
    if not _sys.HAS_COPY_FILE_RANGE:
        return "os.copy_file_range is not available (needs Linux >= 4.5)"
    if src_kind != "file" or dst_kind != "file":
        return f"copy_file_range needs two regular files; this is {src_kind} → {dst_kind}"
    return None


def model(src_kind: str, dst_kind: str) -> CopyModel:
    middle = (Hop("page cache", "page cache", CPU, "in kernel, or shared blocks (reflink)"),)
    return build_model(NAME, src_kind, dst_kind, middle, user_space=False)


def move(
    src_fd: int, dst_fd: int, offset: int | None, count: int, dst_offset: int | None, tally: Tally | None
) -> tuple[int, Status]:
    if offset is None:
        raise GiveUp("copy_file_range needs a source offset")
    moved = 0
    while moved < count:
        try:
            n = os.copy_file_range(
                src_fd,
                dst_fd,
                min(count - moved, _sys.MAX_CHUNK),
                offset + moved,
                None if dst_offset is None else dst_offset + moved,
            )
        except OSError as exc:
            if exc.errno == errno.EBADF and moved == 0 and fcntl.fcntl(dst_fd, fcntl.F_GETFL) & os.O_APPEND:
                raise GiveUp("EBADF, copy_file_range refuses an O_APPEND target") from None
            raise give_up_or_raise(exc, moved, "copy_file_range refused these files") from None
        if tally is not None:
            tally.add(NAME)
        if n == 0:
            if moved == 0 and offset == 0:
                # procfs/sysfs report size 0 and copy_file_range returns 0 though data exists (CPython, coreutils
                # and Go all check for this); let a reading route try.
                raise GiveUp("copy_file_range returned 0 at offset 0 (procfs-like file)")
            return moved, Status.EOF
        moved += n
    return moved, Status.DONE
