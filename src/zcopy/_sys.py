"""What the routes need to know about the platform and kernel: constants Python lacks, and capability flags.

Everything here is decided once at import; the routes read these names instead of probing themselves. A module
outside the routes that needs one constant only it uses looks it up next to its use, the same way (getattr with
the Linux value as the fallback): aio.py MSG_MORE, channel.py IOV_MAX, mapped.py and edit/editor.py
MADV_POPULATE_*, observe.py RUSAGE_THREAD and /proc files, lab/peer.py splice.
"""

from __future__ import annotations

import errno
import fcntl
import os

# sendfile(2), splice(2), copy_file_range(2): "will transfer at most 0x7ffff000 (2,147,479,552) bytes,
# returning the number of bytes actually transferred" (man 2 sendfile, NOTES). Same cap applies to read/write.
MAX_CHUNK = 0x7FFFF000

# fcntl(2): F_SETPIPE_SZ = F_LINUX_SPECIFIC_BASE(1024) + 7, Linux >= 2.6.35.
F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)

# Open file description locks (Linux >= 3.15): per-open-file, not per-process, so two channels in one
# process conflict as they should. Fall back to classic POSIX record locks elsewhere.
F_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
F_OFD_SETLKW: int | None = getattr(fcntl, "F_OFD_SETLKW", None)

HAS_SENDFILE = hasattr(os, "sendfile")
HAS_SPLICE = hasattr(os, "splice")  # Python >= 3.10 on Linux
HAS_COPY_FILE_RANGE = hasattr(os, "copy_file_range")  # Python >= 3.8, Linux >= 4.5
# open(2) O_DIRECT: DMA between the device and the user buffer, skipping the page cache (0o40000 on x86 and
# arm64; Python exports the right value for the platform where it has it).
O_DIRECT: int = getattr(os, "O_DIRECT", 0)
HAS_O_DIRECT = O_DIRECT != 0
SPLICE_F_MOVE: int = getattr(os, "SPLICE_F_MOVE", 1)
SPLICE_F_MORE: int = getattr(os, "SPLICE_F_MORE", 4)

# Errors that mean "this mechanism cannot do this pair of fds", as CPython's shutil and coreutils treat them.
# Before any byte has moved they send us to the next route; after progress they are raised. EBADF and ESPIPE are
# not among them: a closed fd, one opened the wrong way or an offset on a pipe is the caller's bug, raised at once
# (copy_file_range's EBADF for an O_APPEND target is recognised by that route and gives up).
GIVE_UP_ERRNOS = frozenset({errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTSOCK})


def _pipe_max_size() -> int:
    # /proc/sys/fs/pipe-max-size: the largest size an unprivileged F_SETPIPE_SZ may ask for (default 1 MiB).
    try:
        with open("/proc/sys/fs/pipe-max-size", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


# The pipe splice uses: 1 MiB, the default pipe-max-size, so an unprivileged process gets it. The default 64 KiB
# pipe would take 16 times as many splice calls per byte.
SPLICE_PIPE_SIZE = min(_pipe_max_size(), 1 << 20)

# readwrite's reused buffer: 1 MiB, the same size as splice's pipe, so both routes make the same number of calls.
READWRITE_BUFFER = 1 << 20

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
