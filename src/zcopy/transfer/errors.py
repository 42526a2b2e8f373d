"""Errors of zcopy send/recv, all under zcopy.errors.ZeroCopyError.

Each carries a wire ``code`` (docs/protocol.md, "Error codes") so the side that detects a problem can tell the
other side exactly what went wrong in an ERROR frame.
"""

from __future__ import annotations

import errno

from zcopy.errors import ZeroCopyError

# Error codes carried in ERROR frames and ACKs (docs/protocol.md). Stable across protocol versions.
E_PROTOCOL = 1  # malformed frame, frame out of order, bad magic
E_VERSION = 2  # the peers speak different protocol versions
E_AUTH = 3  # token missing, wrong or not proven
E_NAME = 4  # a manifest name that could escape the target directory
E_EXISTS = 5  # the target exists and --overwrite was not given
E_NOSPACE = 6  # ENOSPC/EDQUOT on the receiver
E_IO = 7  # any other OSError
E_CHECKSUM = 8  # the received bytes do not match the sender's checksum
E_SOURCE_CHANGED = 9  # the source file shrank, grew or changed while being sent
E_UNSUPPORTED = 10  # a feature (checksum algorithm, resume) the peer does not offer
E_INTERNAL = 11
E_INTEGRITY = 12  # a MAC over the manifest, plan, a digest, an ACK or a stream end did not verify
E_MODE = 13  # one side insists on TLS, the other on --plain

ERROR_NAMES: dict[int, str] = {
    E_PROTOCOL: "protocol error",
    E_VERSION: "version mismatch",
    E_AUTH: "authentication failed",
    E_NAME: "unsafe name",
    E_EXISTS: "target exists",
    E_NOSPACE: "no space left on receiver",
    E_IO: "I/O error",
    E_CHECKSUM: "checksum mismatch",
    E_SOURCE_CHANGED: "source changed while sending",
    E_UNSUPPORTED: "unsupported feature",
    E_INTERNAL: "internal error",
    E_INTEGRITY: "integrity check failed",
    E_MODE: "encryption mismatch",
}


class TransferError(ZeroCopyError):
    """A send/recv session failed; ``code`` is the wire error code (E_*)."""

    code: int = E_INTERNAL

    def __init__(self, message: str, code: int | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(message)


class ProtocolError(TransferError):
    """The peer sent bytes that are not a valid frame in the current state (or is not a zcopy peer)."""

    code = E_PROTOCOL


class VersionError(ProtocolError):
    """The peer speaks another protocol version."""

    code = E_VERSION


class AuthError(TransferError):
    """Token authentication failed (wrong or missing token, or the peer could not prove it knows it)."""

    code = E_AUTH


class UnsafeNameError(TransferError):
    """A manifest name that could escape the target directory (absolute, `..`, NUL, backslash, symlink)."""

    code = E_NAME


class ModeError(TransferError):
    """One side insists on TLS and the other on --plain: refused on both sides."""

    code = E_MODE


class ConnectionDropped(TransferError):
    """The sender went away in the middle of the session; partial files are kept for --resume."""

    code = E_IO


class RemoteError(TransferError):
    """The peer reported an error in an ERROR frame; ``code`` is what it sent."""


# errno values that mean "the receiver's disk is full" (a quota counts as full).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def from_os_error(exc: OSError, writing: str = "", kept: str = "") -> TransferError:
    """The one translation of an OSError met while landing files into a wire error: ENOSPC/EDQUOT →
    E_NOSPACE ("no space left writing WRITING" + KEPT, what stays for --resume), anything else → E_IO (the
    OS message and the file name)."""
    where = f": {exc.filename}" if exc.filename else ""
    if exc.errno in NO_SPACE_ERRNOS:
        return TransferError(f"no space left {f'writing {writing}' if writing else f'on the receiver{where}'}{kept}",
                             E_NOSPACE)
    return TransferError(f"{exc.strerror or exc}{where}", E_IO)
