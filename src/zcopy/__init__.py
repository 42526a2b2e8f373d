"""zcopy: zero-copy I/O with honest routes. The public names; each lives in its own module.

Names are imported on first use (PEP 562) so that `zcopy cp` starts as fast as Python allows: a copy of a large
file is compared against coreutils `cp`, which pays no interpreter start-up at all.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing itself costs ~3 ms of start-up; mypy honours this spelling

__version__ = "0.1.0"

_WHERE = {
    "FileChannel": "zcopy.channel",
    "FileLock": "zcopy.channel",
    "SocketChannel": "zcopy.channel",
    "ClosedChannelError": "zcopy.errors",
    "NonReadableChannelError": "zcopy.errors",
    "NonWritableChannelError": "zcopy.errors",
    "NotRegularFileError": "zcopy.errors",
    "OverlappingFileLockError": "zcopy.errors",
    "RouteUnavailable": "zcopy.errors",
    "TruncatedFileError": "zcopy.errors",
    "ZeroCopyError": "zcopy.errors",
    "copy": "zcopy.fastcopy",
    "copytree": "zcopy.tree",
    "aligned_buffer": "zcopy.aligned",
    "read_file": "zcopy.readfile",
    "MapMode": "zcopy.mapped",
    "MappedBuffer": "zcopy.mapped",
}

if TYPE_CHECKING:
    from zcopy.aligned import aligned_buffer
    from zcopy.channel import FileChannel, FileLock, SocketChannel
    from zcopy.errors import (
        ClosedChannelError,
        NonReadableChannelError,
        NonWritableChannelError,
        NotRegularFileError,
        OverlappingFileLockError,
        RouteUnavailable,
        TruncatedFileError,
        ZeroCopyError,
    )
    from zcopy.fastcopy import copy
    from zcopy.mapped import MapMode, MappedBuffer
    from zcopy.readfile import read_file
    from zcopy.tree import copytree


# Eager, unlike the rest: the class `observe` shares its name with its module, and importing the submodule sets
# `zcopy.observe` to the module. Binding the class here, right after that import, makes `zcopy.observe` the class
# for good (a later `import zcopy.observe` finds the module in sys.modules and leaves the attribute alone).
from zcopy.observe import observe  # noqa: E402


def __getattr__(name: str) -> object:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'zcopy' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "ClosedChannelError",
    "FileChannel",
    "FileLock",
    "MapMode",
    "MappedBuffer",
    "NonReadableChannelError",
    "NonWritableChannelError",
    "NotRegularFileError",
    "OverlappingFileLockError",
    "RouteUnavailable",
    "SocketChannel",
    "TruncatedFileError",
    "ZeroCopyError",
    "__version__",
    "aligned_buffer",
    "copy",
    "copytree",
    "observe",
    "read_file",
]
