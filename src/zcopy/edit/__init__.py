"""zcopy.edit: find/replace in files of any size through mmap, in place or by an atomic rewrite.

`scan` is the pure matcher, `result` the outcome model, `editor` the I/O (locks, mappings, temp files).
"""

from zcopy.edit.editor import (
    ConcurrentModificationError,
    FileLockedError,
    LengthChangeError,
    replace,
)
from zcopy.edit.result import ReplaceResult, exit_code
from zcopy.errors import NotRegularFileError

__all__ = [
    "ConcurrentModificationError",
    "FileLockedError",
    "LengthChangeError",
    "NotRegularFileError",
    "ReplaceResult",
    "exit_code",
    "replace",
]
