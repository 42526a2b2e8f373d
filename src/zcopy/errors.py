"""The public exception hierarchy: every error zcopy raises on purpose derives from ZeroCopyError.

OSError from the kernel passes through unchanged (with its filename). When a transfer fails after some bytes
moved, the OSError carries ``bytes_moved`` (an int attribute) so callers know where it stopped.
"""

from __future__ import annotations

import io


class ZeroCopyError(Exception):
    """Root of zcopy's own errors."""


class ClosedChannelError(ZeroCopyError, ValueError):
    """An operation on a channel or mapping that was already closed (ValueError, like Python's closed files)."""


class NonReadableChannelError(ZeroCopyError, io.UnsupportedOperation):
    """Reading from a channel opened without read access."""


class NonWritableChannelError(ZeroCopyError, io.UnsupportedOperation):
    """Writing to a channel opened without write access."""


class TruncatedFileError(ZeroCopyError):
    """The source file shrank while its bytes were being transferred.

    ``path`` names the file (or ``fd:N``), ``position`` is the file offset where data stopped coming,
    ``expected_end`` the offset the transfer was asked to reach and ``bytes_moved`` what did move.
    """

    def __init__(self, path: str, position: int, expected_end: int, bytes_moved: int) -> None:
        self.path = path
        self.position = position
        self.expected_end = expected_end
        self.bytes_moved = bytes_moved
        super().__init__(
            f"{path} was truncated during the transfer: data stopped at offset {position}, "
            f"expected {expected_end} ({bytes_moved} bytes moved)"
        )


class NotRegularFileError(ZeroCopyError):
    """A whole-file operation (read_file, replace) was given a FIFO, device, directory or socket; refused before
    the file is opened for reading, so a FIFO never blocks the caller."""


class OverlappingFileLockError(ZeroCopyError):
    """This channel already holds a lock overlapping the requested range (Java's OverlappingFileLockException).

    OFD locks of one open file merge silently: a second lock would convert the first one's overlap, and releasing
    either would unlock the shared bytes under the other. zcopy refuses the second lock instead."""


class RouteUnavailable(ZeroCopyError):
    """A route that was forced (``route=...``) or required (``fallback=False``) cannot be used; ``reason`` says why."""

    def __init__(self, route: str, reason: str) -> None:
        self.route = route
        self.reason = reason
        super().__init__(f"route {route!r} unavailable: {reason}")
