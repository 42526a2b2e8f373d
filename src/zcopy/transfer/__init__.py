"""zcopy send/recv: files and trees between machines, TLS 1.3 by default; with --plain, sendfile on the sender
(zero-copy) and, on the receiver, O_DIRECT from its buffer (one CPU copy) or, with --cache, splice."""

from zcopy.transfer.errors import (
    AuthError,
    ModeError,
    ProtocolError,
    RemoteError,
    TransferError,
    UnsafeNameError,
    VersionError,
)
from zcopy.transfer.protocol import IntegrityError
from zcopy.transfer.receiver import ConnectionDropped, Receiver, SessionResult
from zcopy.transfer.sender import SendResult, send

__all__ = [
    "AuthError",
    "ConnectionDropped",
    "IntegrityError",
    "ModeError",
    "ProtocolError",
    "Receiver",
    "RemoteError",
    "SendResult",
    "SessionResult",
    "TransferError",
    "UnsafeNameError",
    "VersionError",
    "send",
]
