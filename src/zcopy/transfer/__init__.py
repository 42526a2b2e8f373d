"""zcopy send/recv: files and trees between machines; sendfile on the sender, splice on the receiver."""

from zcopy.transfer.errors import (
    AuthError,
    ProtocolError,
    RemoteError,
    TransferError,
    UnsafeNameError,
    VersionError,
)
from zcopy.transfer.receiver import ConnectionDropped, Receiver, SessionResult
from zcopy.transfer.sender import SendResult, send

__all__ = [
    "AuthError",
    "ConnectionDropped",
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
