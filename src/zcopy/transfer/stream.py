"""One side's end of a send/recv connection: frames in through a protocol Decoder, frames out with sendall.

Shared by the sender and the receiver, so both read the peer's ERROR frame, an early end of stream and the
clear-text bytes before TLS the same way. The socket is replaced by its TLS wrapper once the handshake is done.
"""

from __future__ import annotations

import socket
from typing import Literal

from zcopy.transfer import protocol as p
from zcopy.transfer.errors import ERROR_NAMES, ProtocolError, RemoteError, TransferError


class PeerError(RemoteError):
    """The peer ended the session with an ERROR frame: it needs no reply."""

    def __init__(self, peer: str, ev: p.Error) -> None:
        super().__init__(f"{peer}: {ERROR_NAMES.get(ev.code, 'error')}: {ev.message}", ev.code)


class Stream:
    """Reads the `peer`'s stream ("sender" or "receiver"). `exact`: never read a byte past the frame the decoder
    is waiting for (the receiver, so FILE bodies stay in the socket for splice); otherwise read in 64 KiB pieces.
    Before TLS starts both sides read exactly (see next()). An early end of stream raises `on_eof`."""

    def __init__(self, sock: socket.socket, peer: Literal["sender", "receiver"], *, exact: bool, on_eof: TransferError,
                 buffer_size: int = 1 << 16) -> None:
        self.sock = sock
        self.peer = peer
        self.exact = exact
        self.on_eof = on_eof
        self.dec = p.Decoder(peer)
        self.buf = bytearray(buffer_size)

    def next(self, exact: bool | None = None) -> p.Event:
        """The next frame (or FILE body piece) from the peer, blocking. An ERROR frame raises PeerError."""
        exact = self.exact if exact is None else exact
        while True:
            ev = self.dec.next_event()
            if ev is not p.NEED_DATA:
                if isinstance(ev, p.Error):
                    raise PeerError(self.peer, ev)
                return ev
            want = max(1, self.dec.wanted()) if exact else len(self.buf)
            n = self.sock.recv_into(self.buf, min(want, len(self.buf)))
            if n == 0:
                raise self.on_eof
            self.dec.feed(memoryview(self.buf)[:n])

    def expect(self, kind: type[p.Message], exact: bool | None = None) -> p.Message:
        ev = self.next(exact)
        if not isinstance(ev, kind):
            raise ProtocolError(f"expected {kind.__name__} from the {self.peer}, got {type(ev).__name__}")
        return ev

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


__all__ = ["PeerError", "Stream"]
