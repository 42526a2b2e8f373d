"""The pairing phase of a session through a relay: dial the relay, ask for a nameplate (sender) or join one,
wait until the peer is there, then run SPAKE2 with the code over the spliced connection and confirm the key.

From the PAKE key both sides derive the token a direct session is given by hand; the session that follows is
the direct one (TLS 1.3 with the proofs bound to the receiver's certificate), so the relay, which sees only
SPAKE2 messages and then TLS records, can neither read nor alter it. SPAKE2 (the `spake2` package, the one
magic-wormhole uses) gives an attacker one online guess per exchange and nothing to test offline; a failed
exchange ends the code on both sides with WRONG_CODE and nothing is written.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from collections.abc import Callable

from zcopy.relay import protocol as rp
from zcopy.transfer import codes
from zcopy.transfer.errors import E_AUTH, E_IO, AuthError, ProtocolError, TransferError

WRONG_CODE = "wrong code, or someone tried to guess it"
# SPAKE2 identities: each side's role is fixed, so the code cannot be reflected back at its own side.
_ID_SENDER = b"zcopy/2 sender"
_ID_RECEIVER = b"zcopy/2 receiver"
_PAKE = struct.Struct(">4sBH")  # "ZPAK", version, message length; then the message
_PAKE_MAGIC = b"ZPAK"
_MAX_PAKE = 256
_CONFIRM = 32
# Seconds to wait beyond the relay's own pairing timeout before giving up on it.
_PAIRING_MARGIN_S = 10.0


class RelayError(TransferError):
    """The relay refused us, or is not a zcopy relay."""

    code = E_IO


class WrongCode(AuthError):
    """The PAKE exchange failed: the peer used another code (or was an attacker guessing)."""

    code = E_AUTH

    def __init__(self) -> None:
        super().__init__(WRONG_CODE)


def _recv_exact(sock: socket.socket, n: int, what: str) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise TransferError(f"the connection through the relay closed {what}", E_IO)
        out += chunk
    return bytes(out)


def _reply(sock: socket.socket) -> rp.Reply:
    head = _recv_exact(sock, rp.REPLY_HEAD, "before the relay answered")
    try:
        n = rp.reply_length(head)
    except rp.RelayProtocolError as exc:
        raise RelayError(str(exc)) from None
    return rp.decode_reply(head, _recv_exact(sock, n, "in the relay's answer") if n else b"")


def dial(relay: tuple[str, int], side: int, nameplate: str | None, *, timeout: float | None,
         on_waiting: Callable[[str], None] | None = None) -> tuple[socket.socket, str]:
    """Connect to the relay and wait until the peer has joined: (the spliced connection, the nameplate).
    `nameplate` None asks the relay for one (a sender without --code). `on_waiting(nameplate)` is called as soon
    as the relay has placed us, before the peer arrives (the sender prints its code then)."""
    sock = socket.create_connection(relay, timeout=timeout)
    try:
        req = rp.Request(rp.OP_JOIN, side, nameplate) if nameplate else rp.Request(rp.OP_ALLOCATE, side)
        sock.sendall(req.encode())
        rep = _reply(sock)
        if rep.status == rp.ST_REFUSED:
            raise RelayError(f"the relay refused: {rep.text}")
        if rep.status != rp.ST_WAITING:
            raise RelayError("the relay paired us before placing us")
        try:
            plate, wait = rp.parse_waiting(rep.text)
        except rp.RelayProtocolError as exc:
            raise RelayError(str(exc)) from None
        if on_waiting is not None:
            on_waiting(plate)
        sock.settimeout(wait + _PAIRING_MARGIN_S)
        rep = _reply(sock)
        if rep.status == rp.ST_REFUSED:
            raise RelayError(f"the relay ended the wait: {rep.text}")
        if rep.status != rp.ST_PAIRED:
            raise RelayError("unexpected answer from the relay")
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, plate
    except BaseException:
        sock.close()
        raise


def _confirm(key: bytes, side: bytes) -> bytes:
    return hmac.new(key, b"zcopy/2 pake confirm\0" + side, hashlib.sha256).digest()


def pake(sock: socket.socket, code: str, side: int) -> bytes:
    """SPAKE2 with `code` over the paired connection, then key confirmation both ways; returns the token the
    session authenticates with. Raises WrongCode (on both sides) if the codes differ."""
    # Imported here: `spake2` pulls in `cryptography` (~45 ms), which a direct session never needs.
    from spake2 import SPAKE2_A, SPAKE2_B
    from spake2.spake2 import SPAKEError

    _plate, password = codes.parse(code)
    sender = side == rp.SIDE_SENDER
    cls = SPAKE2_A if sender else SPAKE2_B
    state = cls(password.encode(), idA=_ID_SENDER, idB=_ID_RECEIVER)
    msg = state.start()
    sock.sendall(_PAKE.pack(_PAKE_MAGIC, 1, len(msg)) + msg)
    magic, version, n = _PAKE.unpack(_recv_exact(sock, _PAKE.size, "during the code exchange"))
    if magic != _PAKE_MAGIC or version != 1 or n > _MAX_PAKE:
        raise ProtocolError("the peer did not start the code exchange")
    theirs = _recv_exact(sock, n, "during the code exchange")
    try:
        key = state.finish(theirs)
    except SPAKEError:
        raise WrongCode() from None
    mine, expected = (b"sender", b"receiver") if sender else (b"receiver", b"sender")
    sock.sendall(_confirm(key, mine))
    got = _recv_exact(sock, _CONFIRM, "during the code exchange (the peer's code differs?)")
    if not hmac.compare_digest(got, _confirm(key, expected)):
        raise WrongCode()
    return hmac.new(key, b"zcopy/2 token", hashlib.sha256).hexdigest().encode()


# -- the direct offer: after the PAKE, a receiver that also listens names its addresses; the sender tries them ---------
_OFFER = struct.Struct(">4sH")  # "ZOFR", text length; then the text (addresses, space-separated), then a MAC
_CHOICE = struct.Struct(">4sB")  # "ZCHO", 1 direct / 0 through the relay; then a MAC
_MAX_OFFER = 1024
# How long the sender tries each offered address before it keeps to the relay.
DIRECT_TRY_S = 2.0


def _mac(token: bytes, label: bytes, data: bytes) -> bytes:
    return hmac.new(token, b"zcopy/2 " + label + b"\0" + data, hashlib.sha256).digest()


def send_offer(sock: socket.socket, token: bytes, addresses: list[tuple[str, int]]) -> None:
    """The receiver's addresses (none: it does not listen), authenticated with the session token so the relay can
    neither forge nor change them."""
    text = " ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses).encode()[:_MAX_OFFER]
    sock.sendall(_OFFER.pack(b"ZOFR", len(text)) + text + _mac(token, b"offer", text))


def read_offer(sock: socket.socket, token: bytes) -> list[tuple[str, int]]:
    magic, n = _OFFER.unpack(_recv_exact(sock, _OFFER.size, "before the receiver's offer"))
    if magic != b"ZOFR" or n > _MAX_OFFER:
        raise ProtocolError("expected the receiver's offer")
    text = _recv_exact(sock, n, "in the receiver's offer")
    if not hmac.compare_digest(_recv_exact(sock, 32, "in the receiver's offer"), _mac(token, b"offer", text)):
        raise _integrity("the receiver's offer")
    out = []
    for item in text.decode("ascii", "replace").split():
        host, _, port = item.rpartition(":")
        if port.isdigit():
            out.append((host.strip("[]"), int(port)))
    return out


def _integrity(what: str) -> TransferError:
    from zcopy.transfer.protocol import IntegrityError

    return IntegrityError(f"{what} failed its integrity check: altered on the way")


def try_direct(addresses: list[tuple[str, int]], timeout: float = DIRECT_TRY_S) -> socket.socket | None:
    """The first offered address that accepts a connection, or None."""
    for address in addresses:
        try:
            return socket.create_connection(address, timeout=timeout)
        except OSError:
            continue
    return None


def send_choice(sock: socket.socket, token: bytes, direct: bool) -> None:
    data = bytes([direct])
    sock.sendall(_CHOICE.pack(b"ZCHO", direct) + _mac(token, b"choice", data))


def read_choice(sock: socket.socket, token: bytes) -> bool:
    magic, choice = _CHOICE.unpack(_recv_exact(sock, _CHOICE.size, "before the sender's choice"))
    if magic != b"ZCHO" or choice not in (0, 1):
        raise ProtocolError("expected the sender's choice of route")
    got = _recv_exact(sock, 32, "in the sender's choice")
    if not hmac.compare_digest(got, _mac(token, b"choice", bytes([choice]))):
        raise _integrity("the sender's choice")
    return bool(choice)


__all__ = ["DIRECT_TRY_S", "WRONG_CODE", "RelayError", "WrongCode", "dial", "pake", "read_choice", "read_offer",
           "send_choice", "send_offer", "try_direct"]
