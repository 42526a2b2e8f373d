"""The relay's rendezvous wire format (docs/protocol.md, "Relay"), pure: bytes in, values out.

A client sends one REQUEST, then nothing until the relay answers PAIRED; from then on the relay splices the
connection to its peer's and never looks at a byte again. Fixed layouts, read exactly, so the relay never reads
a byte past the request (everything after it is the peers' own stream).

    REQUEST  magic "ZREL" | version u8 | op u8 (1 allocate, 2 join) | side u8 (1 sender, 2 receiver)
             | nameplate length u8 | nameplate (ASCII digits; empty to allocate)
    REPLY    magic "ZREL" | status u8 (0 waiting, 1 paired, 2 refused) | length u16 | text (UTF-8)
             waiting: "<nameplate> <pairing timeout in seconds>"; refused: why; paired: empty
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

MAGIC: Final = b"ZREL"
VERSION: Final = 1

OP_ALLOCATE: Final = 1
OP_JOIN: Final = 2
SIDE_SENDER: Final = 1
SIDE_RECEIVER: Final = 2
SIDE_NAMES: Final = {SIDE_SENDER: "sender", SIDE_RECEIVER: "receiver"}

ST_WAITING: Final = 0
ST_PAIRED: Final = 1
ST_REFUSED: Final = 2

MAX_NAMEPLATE: Final = 16  # digits
_REQ: Final = struct.Struct(">4sBBBB")
REQUEST_HEAD: Final = _REQ.size
_REPLY: Final = struct.Struct(">4sBH")
REPLY_HEAD: Final = _REPLY.size
MAX_REPLY_TEXT: Final = 1024


class RelayProtocolError(ValueError):
    """Bytes that are not a relay request or reply."""


@dataclass(frozen=True)
class Request:
    op: int
    side: int
    nameplate: str = ""

    def encode(self) -> bytes:
        plate = self.nameplate.encode("ascii")
        return _REQ.pack(MAGIC, VERSION, self.op, self.side, len(plate)) + plate


def request_length(head: bytes) -> int:
    """The whole request's length, from its REQUEST_HEAD first bytes (checked as far as they go)."""
    magic, version, op, side, n = _REQ.unpack(head)
    if magic != MAGIC:
        raise RelayProtocolError("not a zcopy relay request (a zcopy send/recv with --relay speaks first)")
    if version != VERSION:
        raise RelayProtocolError(f"relay protocol version {version}; this relay speaks {VERSION}")
    if op not in (OP_ALLOCATE, OP_JOIN) or side not in SIDE_NAMES:
        raise RelayProtocolError("unknown relay request")
    if n > MAX_NAMEPLATE or (op == OP_ALLOCATE) != (n == 0):
        raise RelayProtocolError("bad nameplate length")
    return REQUEST_HEAD + int(n)


def decode_request(data: bytes) -> Request:
    n = request_length(data[:REQUEST_HEAD])
    if len(data) != n:
        raise RelayProtocolError("truncated relay request")
    _, _, op, side, _ = _REQ.unpack(data[:REQUEST_HEAD])
    plate = data[REQUEST_HEAD:]
    if op == OP_JOIN and not (plate.isdigit() and plate.isascii() and int(plate) > 0):
        raise RelayProtocolError("a nameplate is a positive number")
    if op == OP_JOIN and plate.startswith(b"0"):
        raise RelayProtocolError("a nameplate has no leading zero")
    return Request(op, side, plate.decode("ascii"))


@dataclass(frozen=True)
class Reply:
    status: int
    text: str = ""

    def encode(self) -> bytes:
        data = self.text.encode()[:MAX_REPLY_TEXT]
        return _REPLY.pack(MAGIC, self.status, len(data)) + data


def reply_length(head: bytes) -> int:
    magic, status, n = _REPLY.unpack(head)
    if magic != MAGIC:
        raise RelayProtocolError("the relay address answered, but not as a zcopy relay")
    if status not in (ST_WAITING, ST_PAIRED, ST_REFUSED) or n > MAX_REPLY_TEXT:
        raise RelayProtocolError("malformed reply from the relay")
    return int(n)


def decode_reply(head: bytes, text: bytes) -> Reply:
    _, status, _ = _REPLY.unpack(head)
    return Reply(status, text.decode("utf-8", "replace"))


def waiting_text(nameplate: str, timeout: float) -> str:
    return f"{nameplate} {timeout:g}"


def parse_waiting(text: str) -> tuple[str, float]:
    plate, _, timeout = text.partition(" ")
    try:
        return plate, float(timeout)
    except ValueError:
        raise RelayProtocolError(f"malformed waiting reply {text!r}") from None


__all__ = [
    "MAGIC", "OP_ALLOCATE", "OP_JOIN", "REPLY_HEAD", "REQUEST_HEAD", "SIDE_NAMES", "SIDE_RECEIVER", "SIDE_SENDER",
    "ST_PAIRED", "ST_REFUSED", "ST_WAITING", "RelayProtocolError", "Reply", "Request", "decode_reply",
    "decode_request", "parse_waiting", "reply_length", "request_length", "waiting_text",
]
