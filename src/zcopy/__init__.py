"""zcopy: zero-copy I/O with honest routes. The public names; each lives in its own module."""

from zcopy.channel import FileChannel, FileLock, SocketChannel
from zcopy.errors import (
    ClosedChannelError,
    NonReadableChannelError,
    NonWritableChannelError,
    RouteUnavailable,
    TruncatedFileError,
    ZeroCopyError,
)
from zcopy.fastcopy import copy
from zcopy.mapped import MapMode, MappedBuffer
from zcopy.observe import observe

__version__ = "0.1.0"

__all__ = [
    "ClosedChannelError",
    "FileChannel",
    "FileLock",
    "MapMode",
    "MappedBuffer",
    "NonReadableChannelError",
    "NonWritableChannelError",
    "RouteUnavailable",
    "SocketChannel",
    "TruncatedFileError",
    "ZeroCopyError",
    "__version__",
    "copy",
    "observe",
]
