"""The only module that branches on platform and kernel: constants Python lacks, and capability flags.

Everything here is decided once at import; routes and tools read these names instead of probing themselves.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys

IS_LINUX = sys.platform.startswith("linux")

# sendfile(2), splice(2), copy_file_range(2): "will transfer at most 0x7ffff000 (2,147,479,552) bytes,
# returning the number of bytes actually transferred" (man 2 sendfile, NOTES). Same cap applies to read/write.
MAX_CHUNK = 0x7FFFF000

# fcntl(2): F_SETPIPE_SZ/F_GETPIPE_SZ = F_LINUX_SPECIFIC_BASE(1024) + 7/8, Linux >= 2.6.35.
F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ: int = getattr(fcntl, "F_GETPIPE_SZ", 1032)

# socket(7)/msg_zerocopy.rst: SO_ZEROCOPY = 60, MSG_ZEROCOPY = 0x4000000 (Linux >= 4.14); Python 3.11 lacks both.
# (Literals, not getattr(socket, ...): importing socket here would cost every `zcopy` start-up ~2 ms.)
SO_ZEROCOPY = 60
MSG_ZEROCOPY = 0x4000000

# Open file description locks (Linux >= 3.15): per-open-file, not per-process, so two channels in one
# process conflict as they should. Fall back to classic POSIX record locks elsewhere.
F_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
F_OFD_SETLKW: int | None = getattr(fcntl, "F_OFD_SETLKW", None)

HAS_SENDFILE = hasattr(os, "sendfile")
HAS_SPLICE = hasattr(os, "splice")  # Python >= 3.10 on Linux
HAS_COPY_FILE_RANGE = hasattr(os, "copy_file_range")  # Python >= 3.8, Linux >= 4.5
HAS_FALLOCATE = hasattr(os, "posix_fallocate")
HAS_FADVISE = hasattr(os, "posix_fadvise")
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


PIPE_MAX_SIZE = _pipe_max_size()

# The pipe splice uses: 1 MiB (the default pipe-max-size). Measured here, larger pipes do not lower CPU/GB
# further; the default 64 KiB pipe costs ~16x more splice calls.
SPLICE_PIPE_SIZE = min(PIPE_MAX_SIZE, 1 << 20)

# readwrite's reused buffer: 1 MiB, the point past which bigger buffers stop lowering CPU per byte here while
# staying well inside L2+L3 bounce (measured with bench/core.py on the 2-core EPYC VM).
READWRITE_BUFFER = 1 << 20

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
