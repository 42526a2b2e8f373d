"""The zcopy send/recv wire format (docs/protocol.md), pure: bytes in, events out; messages in, bytes out.

Owns the preamble (magic + version), the frame layout, each message's encoding, the per-direction order of
frames, the HMAC challenge-response, and the raw body that follows a FILE frame. No sockets, no files: the
sender/receiver glue feeds received bytes to a Decoder and writes what the encoders return.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from zcopy.transfer import checksum
from zcopy.transfer.errors import ProtocolError, VersionError

MAGIC: Final = b"ZCPY"
VERSION: Final = 1
# Preamble: magic (4) + version (u16 big-endian). Frozen across versions, so peers of any version can tell
# each other "I speak version N" before anything else is parsed.
PREAMBLE: Final = struct.Struct(">4sH")
PREAMBLE_SIZE: Final = PREAMBLE.size

# Feature bits exchanged in HELLO/WELCOME; the session uses the intersection.
F_AUTH: Final = 1 << 0  # HMAC-SHA256 challenge-response
F_RESUME: Final = 1 << 1  # per-file resume offsets in PLAN
F_XXH3: Final = 1 << 2
F_SHA256: Final = 1 << 3
FEATURES: Final = F_AUTH | F_RESUME | F_XXH3 | F_SHA256
ALGO_FEATURE: Final = {checksum.NONE: 0, checksum.XXH3: F_XXH3, checksum.SHA256: F_SHA256}

NONCE_SIZE: Final = 32  # 256-bit challenges: a replayed or guessed challenge is out of reach
MAC_SIZE: Final = 32  # HMAC-SHA256 output

# Frame header: type (u8) + payload length (u32 big-endian).
HEADER: Final = struct.Struct(">BI")
HEADER_SIZE: Final = HEADER.size

T_HELLO: Final = 1
T_WELCOME: Final = 2
T_AUTH: Final = 3
T_AUTH_OK: Final = 4
T_MANIFEST: Final = 5
T_PLAN: Final = 6
T_FILE: Final = 7
T_TRAILER: Final = 8
T_ACK: Final = 9
T_DONE: Final = 10
T_BYE: Final = 11
T_ERROR: Final = 15

# Largest payload accepted per frame type, checked as soon as the header arrives so a hostile length cannot
# make us buffer gigabytes. MANIFEST/PLAN: 64 MiB holds about a million entries with short names.
MAX_PAYLOAD: Final[dict[int, int]] = {
    T_HELLO: 4 + NONCE_SIZE,
    T_WELCOME: 4 + 1 + NONCE_SIZE,
    T_AUTH: MAC_SIZE,
    T_AUTH_OK: MAC_SIZE,
    T_MANIFEST: 64 << 20,
    T_PLAN: 64 << 20,
    T_FILE: 4 + 8 + 8,
    T_TRAILER: 4 + 1 + 1 + 255,
    T_ACK: 4 + 1 + 2 + 65535,
    T_DONE: 0,
    T_BYE: 64 << 10,
    T_ERROR: 2 + 2 + 65535,
}

# PLAN entry states.
P_NEW: Final = 0  # nothing there: send from 0
P_PARTIAL: Final = 1  # a partial of `have` bytes with `digest` over them
P_EXISTS: Final = 2  # the final name exists with `have` bytes and `digest` (resume: skip if identical)

# TRAILER / ACK statuses.
S_OK: Final = 0
S_SOURCE_CHANGED: Final = 1  # TRAILER: the sender saw the source shrink/grow/change; do not publish
S_FAILED: Final = 2  # ACK: not published, see code + message

Peer = Literal["sender", "receiver"]

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_ENTRY = struct.Struct(">BIqQH")  # is_dir, mode, mtime_ns, size, name length
_PLAN_ENTRY = struct.Struct(">BQB")  # state, have, digest length
_FILE = struct.Struct(">IQQ")  # index, offset, length


class _Reader:
    """Cursor over one frame's payload; every short read is a ProtocolError naming the frame."""

    def __init__(self, what: str, data: bytes) -> None:
        self.what = what
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(f"malformed {self.what} frame: truncated payload")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct) -> tuple[int, ...]:
        values: tuple[int, ...] = st.unpack(self.take(st.size))
        return values

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(f"malformed {self.what} frame: {len(self.data) - self.pos} trailing bytes")


def _frame(ftype: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD[ftype]:
        raise ValueError(f"frame type {ftype} payload of {len(payload)} bytes exceeds {MAX_PAYLOAD[ftype]}")
    return HEADER.pack(ftype, len(payload)) + payload


def encode_preamble(version: int = VERSION) -> bytes:
    return PREAMBLE.pack(MAGIC, version)


# --- messages -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """Sender → receiver, first frame: features offered and the sender's challenge."""

    features: int
    nonce: bytes

    def encode(self) -> bytes:
        return _frame(T_HELLO, _U32.pack(self.features) + self.nonce)

    @staticmethod
    def decode(data: bytes) -> Hello:
        r = _Reader("HELLO", data)
        (features,) = r.unpack(_U32)
        nonce = r.take(NONCE_SIZE)
        r.end()
        return Hello(features, nonce)


@dataclass(frozen=True)
class Welcome:
    """Receiver → sender: features it offers, whether a token is required, the receiver's challenge."""

    features: int
    auth_required: bool
    nonce: bytes

    def encode(self) -> bytes:
        return _frame(T_WELCOME, _U32.pack(self.features) + _U8.pack(self.auth_required) + self.nonce)

    @staticmethod
    def decode(data: bytes) -> Welcome:
        r = _Reader("WELCOME", data)
        (features,) = r.unpack(_U32)
        (flag,) = r.unpack(_U8)
        if flag > 1:
            raise ProtocolError(f"malformed WELCOME frame: auth flag {flag}")
        nonce = r.take(NONCE_SIZE)
        r.end()
        return Welcome(features, bool(flag), nonce)


@dataclass(frozen=True)
class Auth:
    """Sender → receiver: HMAC proving the sender knows the token (the token itself never travels)."""

    mac: bytes

    def encode(self) -> bytes:
        return _frame(T_AUTH, self.mac)

    @staticmethod
    def decode(data: bytes) -> Auth:
        r = _Reader("AUTH", data)
        mac = r.take(MAC_SIZE)
        r.end()
        return Auth(mac)


@dataclass(frozen=True)
class AuthOk:
    """Receiver → sender: HMAC proving the receiver knows the token too (mutual authentication)."""

    mac: bytes

    def encode(self) -> bytes:
        return _frame(T_AUTH_OK, self.mac)

    @staticmethod
    def decode(data: bytes) -> AuthOk:
        r = _Reader("AUTH_OK", data)
        mac = r.take(MAC_SIZE)
        r.end()
        return AuthOk(mac)


@dataclass(frozen=True)
class Entry:
    """One manifest entry: a file (with size) or a directory (size 0); name: relative, '/'-separated."""

    name: bytes
    is_dir: bool
    size: int
    mode: int
    mtime_ns: int


@dataclass(frozen=True)
class Manifest:
    """Sender → receiver: checksum algorithm, whether to resume, every entry (dirs before contents)."""

    algo: int
    resume: bool
    entries: tuple[Entry, ...]

    def encode(self) -> bytes:
        parts = [_U8.pack(self.algo), _U8.pack(self.resume), _U32.pack(len(self.entries))]
        for e in self.entries:
            parts.append(_ENTRY.pack(e.is_dir, e.mode, e.mtime_ns, e.size, len(e.name)))
            parts.append(e.name)
        return _frame(T_MANIFEST, b"".join(parts))

    @staticmethod
    def decode(data: bytes) -> Manifest:
        r = _Reader("MANIFEST", data)
        (algo,) = r.unpack(_U8)
        if algo not in checksum.NAMES:
            raise ProtocolError(f"malformed MANIFEST frame: unknown checksum algorithm id {algo}")
        (resume,) = r.unpack(_U8)
        if resume > 1:
            raise ProtocolError(f"malformed MANIFEST frame: resume flag {resume}")
        (count,) = r.unpack(_U32)
        # Each entry needs at least its fixed part: refuse a count the payload cannot hold before looping.
        if count * _ENTRY.size > len(data):
            raise ProtocolError(f"malformed MANIFEST frame: {count} entries cannot fit in {len(data)} bytes")
        entries = []
        for _ in range(count):
            is_dir, mode, mtime_ns, size, name_len = r.unpack(_ENTRY)
            if is_dir > 1:
                raise ProtocolError(f"malformed MANIFEST frame: entry kind {is_dir}")
            if is_dir and size:
                raise ProtocolError("malformed MANIFEST frame: a directory entry with a size")
            entries.append(Entry(r.take(name_len), bool(is_dir), size, mode, mtime_ns))
        r.end()
        return Manifest(algo, bool(resume), tuple(entries))


@dataclass(frozen=True)
class PlanEntry:
    state: int
    have: int = 0
    digest: bytes = b""


@dataclass(frozen=True)
class Plan:
    """Receiver → sender: per manifest entry, what is already there (partial or final) and its digest."""

    overwrite: bool
    entries: tuple[PlanEntry, ...]

    def encode(self) -> bytes:
        parts = [_U8.pack(self.overwrite), _U32.pack(len(self.entries))]
        for e in self.entries:
            parts.append(_PLAN_ENTRY.pack(e.state, e.have, len(e.digest)))
            parts.append(e.digest)
        return _frame(T_PLAN, b"".join(parts))

    @staticmethod
    def decode(data: bytes) -> Plan:
        r = _Reader("PLAN", data)
        (overwrite,) = r.unpack(_U8)
        if overwrite > 1:
            raise ProtocolError(f"malformed PLAN frame: overwrite flag {overwrite}")
        (count,) = r.unpack(_U32)
        if count * _PLAN_ENTRY.size > len(data):
            raise ProtocolError(f"malformed PLAN frame: {count} entries cannot fit in {len(data)} bytes")
        entries = []
        for _ in range(count):
            state, have, dlen = r.unpack(_PLAN_ENTRY)
            if state not in (P_NEW, P_PARTIAL, P_EXISTS):
                raise ProtocolError(f"malformed PLAN frame: entry state {state}")
            entries.append(PlanEntry(state, have, r.take(dlen)))
        r.end()
        return Plan(bool(overwrite), tuple(entries))


@dataclass(frozen=True)
class FileStart:
    """Sender → receiver: exactly `length` raw body bytes of entry `index`, from file `offset`, follow."""

    index: int
    offset: int
    length: int

    def encode(self) -> bytes:
        return _frame(T_FILE, _FILE.pack(self.index, self.offset, self.length))

    @staticmethod
    def decode(data: bytes) -> FileStart:
        r = _Reader("FILE", data)
        index, offset, length = r.unpack(_FILE)
        r.end()
        return FileStart(index, offset, length)


@dataclass(frozen=True)
class Trailer:
    """Sender → receiver after the body: the whole file's digest, or S_SOURCE_CHANGED (do not publish)."""

    index: int
    status: int
    digest: bytes

    def encode(self) -> bytes:
        return _frame(T_TRAILER, _U32.pack(self.index) + _U8.pack(self.status) + _U8.pack(len(self.digest))
                      + self.digest)

    @staticmethod
    def decode(data: bytes) -> Trailer:
        r = _Reader("TRAILER", data)
        (index,) = r.unpack(_U32)
        (status,) = r.unpack(_U8)
        if status not in (S_OK, S_SOURCE_CHANGED):
            raise ProtocolError(f"malformed TRAILER frame: status {status}")
        (dlen,) = r.unpack(_U8)
        digest = r.take(dlen)
        r.end()
        return Trailer(index, status, digest)


@dataclass(frozen=True)
class Ack:
    """Receiver → sender: entry `index` was published (S_OK) or not (S_FAILED, with code and message)."""

    index: int
    status: int
    code: int = 0
    message: str = ""

    def encode(self) -> bytes:
        msg = self.message.encode("utf-8")[:65535]
        return _frame(T_ACK, _U32.pack(self.index) + _U8.pack(self.status) + _U16.pack(self.code)
                      + msg)

    @staticmethod
    def decode(data: bytes) -> Ack:
        r = _Reader("ACK", data)
        (index,) = r.unpack(_U32)
        (status,) = r.unpack(_U8)
        if status not in (S_OK, S_FAILED):
            raise ProtocolError(f"malformed ACK frame: status {status}")
        (code,) = r.unpack(_U16)
        message = r.take(len(data) - r.pos).decode("utf-8", "replace")
        return Ack(index, status, code, message)


@dataclass(frozen=True)
class Done:
    """Sender → receiver: no more files."""

    def encode(self) -> bytes:
        return _frame(T_DONE, b"")

    @staticmethod
    def decode(data: bytes) -> Done:
        _Reader("DONE", data).end()
        return Done()


@dataclass(frozen=True)
class Bye:
    """Receiver → sender, last frame: the receiver's summary (routes it used, bytes, files), a JSON object."""

    summary: dict[str, object] = field(default_factory=dict)

    def encode(self) -> bytes:
        return _frame(T_BYE, json.dumps(self.summary, separators=(",", ":")).encode())

    @staticmethod
    def decode(data: bytes) -> Bye:
        try:
            summary = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"malformed BYE frame: {exc}") from None
        if not isinstance(summary, dict):
            raise ProtocolError("malformed BYE frame: summary is not an object")
        return Bye(summary)


@dataclass(frozen=True)
class Error:
    """Either direction, last frame: why the session ends (code from zcopy.transfer.errors, message)."""

    code: int
    message: str

    def encode(self) -> bytes:
        msg = self.message.encode("utf-8")[:65535]
        return _frame(T_ERROR, _U16.pack(self.code) + _U16.pack(len(msg)) + msg)

    @staticmethod
    def decode(data: bytes) -> Error:
        r = _Reader("ERROR", data)
        (code,) = r.unpack(_U16)
        (mlen,) = r.unpack(_U16)
        message = r.take(mlen).decode("utf-8", "replace")
        r.end()
        return Error(code, message)


Message = Hello | Welcome | Auth | AuthOk | Manifest | Plan | FileStart | Trailer | Ack | Done | Bye | Error

_DECODERS: dict[int, Callable[[bytes], Message]] = {
    T_HELLO: Hello.decode,
    T_WELCOME: Welcome.decode,
    T_AUTH: Auth.decode,
    T_AUTH_OK: AuthOk.decode,
    T_MANIFEST: Manifest.decode,
    T_PLAN: Plan.decode,
    T_FILE: FileStart.decode,
    T_TRAILER: Trailer.decode,
    T_ACK: Ack.decode,
    T_DONE: Done.decode,
    T_BYE: Bye.decode,
    T_ERROR: Error.decode,
}
_TYPE_NAMES = {
    T_HELLO: "HELLO", T_WELCOME: "WELCOME", T_AUTH: "AUTH", T_AUTH_OK: "AUTH_OK", T_MANIFEST: "MANIFEST",
    T_PLAN: "PLAN", T_FILE: "FILE", T_TRAILER: "TRAILER", T_ACK: "ACK", T_DONE: "DONE", T_BYE: "BYE",
    T_ERROR: "ERROR",
}

# --- frame order --------------------------------------------------------------------------------------------
# Rules: each direction is its own state machine; the state is the last frame type seen from that peer
# (0 = only the preamble so far). ERROR is allowed in every state and ends the stream, as do DONE and BYE.
# A FILE frame is followed by exactly `length` raw body bytes, then a TRAILER. Whether AUTH is *required*
# is the receiver's policy, checked by its glue; the order table only says where AUTH may appear.
_ST_PREAMBLE: Final = -1
_ST_START: Final = 0
_ST_BODY_DONE: Final = 100
_ST_CLOSED: Final = 101

_ALLOWED: Final[dict[Peer, dict[int, frozenset[int]]]] = {
    "sender": {
        _ST_START: frozenset({T_HELLO}),
        T_HELLO: frozenset({T_AUTH, T_MANIFEST}),
        T_AUTH: frozenset({T_MANIFEST}),
        T_MANIFEST: frozenset({T_FILE, T_DONE}),
        _ST_BODY_DONE: frozenset({T_TRAILER}),
        T_TRAILER: frozenset({T_FILE, T_DONE}),
    },
    "receiver": {
        _ST_START: frozenset({T_WELCOME}),
        T_WELCOME: frozenset({T_AUTH_OK, T_PLAN}),
        T_AUTH_OK: frozenset({T_PLAN}),
        T_PLAN: frozenset({T_ACK, T_BYE}),
        T_ACK: frozenset({T_ACK, T_BYE}),
    },
}
_FINAL: Final = frozenset({T_DONE, T_BYE, T_ERROR})


@dataclass(frozen=True)
class BodyData:
    """Body bytes that arrived in the decoder's buffer (the glue moves most of the body past the decoder)."""

    data: bytes


class NeedData:
    """Returned by next_event() when more bytes are needed; wanted() says how many at least."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()
Event = Message | BodyData | NeedData


class Decoder:
    """Incremental decoder for the frames one peer sends (peer="sender" is what a receiver decodes).

    feed() bytes as they arrive, in any split; next_event() returns one message, BodyData or NEED_DATA.
    While a FILE body is pending, `body_remaining` > 0: the glue may move those bytes itself (splice) and
    report them with skip_body(n), which requires that none are buffered here.
    """

    def __init__(self, peer: Peer) -> None:
        self.peer: Peer = peer
        self._buf = bytearray()
        self._state = _ST_PREAMBLE
        self.body_remaining = 0
        self.version: int | None = None

    @property
    def closed(self) -> bool:
        """True after the peer's final frame (DONE, BYE or ERROR)."""
        return self._state == _ST_CLOSED

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def wanted(self) -> int:
        """Bytes still needed before next_event() can return more than NEED_DATA (0 if it already can).

        The receiver reads exactly this many so it never pulls body bytes into user space by accident.
        """
        have = len(self._buf)
        if self._state == _ST_CLOSED:
            return 0
        if self.body_remaining:
            return 0 if have else self.body_remaining
        if self._state == _ST_PREAMBLE:
            return max(0, PREAMBLE_SIZE - have)
        if have < HEADER_SIZE:
            return HEADER_SIZE - have
        length: int = HEADER.unpack_from(self._buf)[1]
        return max(0, HEADER_SIZE + length - have)

    def skip_body(self, n: int) -> None:
        """Account for `n` body bytes the caller moved from the stream itself."""
        if self._buf:
            raise RuntimeError("skip_body() while body bytes are buffered: drain BodyData first")
        if n > self.body_remaining:
            raise RuntimeError(f"skip_body({n}) exceeds the {self.body_remaining} body bytes pending")
        self.body_remaining -= n
        if not self.body_remaining:
            self._state = _ST_BODY_DONE

    def next_event(self) -> Event:
        if self.body_remaining:
            if not self._buf:
                return NEED_DATA
            n = min(len(self._buf), self.body_remaining)
            data = bytes(self._buf[:n])
            del self._buf[:n]
            self.body_remaining -= n
            if not self.body_remaining:
                self._state = _ST_BODY_DONE
            return BodyData(data)
        if self._state == _ST_CLOSED:
            if self._buf:
                raise ProtocolError(f"{len(self._buf)} bytes after the {self.peer}'s final frame")
            return NEED_DATA
        if self._state == _ST_PREAMBLE:
            return self._preamble()
        if len(self._buf) < HEADER_SIZE:
            return NEED_DATA
        ftype, length = HEADER.unpack_from(self._buf)
        name = _TYPE_NAMES.get(ftype)
        if name is None:
            raise ProtocolError(f"unknown frame type {ftype} from the {self.peer}")
        allowed = _ALLOWED[self.peer].get(self._state, frozenset())
        if ftype != T_ERROR and ftype not in allowed:
            fallback = "the preamble" if self._state == _ST_START else "a FILE body"
            after = _TYPE_NAMES.get(self._state, fallback)
            raise ProtocolError(f"{name} frame from the {self.peer} is out of order (after {after})")
        if length > MAX_PAYLOAD[ftype]:
            raise ProtocolError(f"{name} frame of {length} bytes exceeds the limit of {MAX_PAYLOAD[ftype]}")
        if len(self._buf) < HEADER_SIZE + length:
            return NEED_DATA
        payload = bytes(self._buf[HEADER_SIZE : HEADER_SIZE + length])
        del self._buf[: HEADER_SIZE + length]
        msg: Message = _DECODERS[ftype](payload)
        self._state = _ST_CLOSED if ftype in _FINAL else ftype
        if isinstance(msg, FileStart) and msg.length:
            self.body_remaining = msg.length
        elif isinstance(msg, FileStart):
            self._state = _ST_BODY_DONE
        return msg

    def _preamble(self) -> Event:
        # Check the magic on the bytes we have so a non-zcopy peer (an HTTP client, say) is named at once.
        head = bytes(self._buf[: len(MAGIC)])
        if head != MAGIC[: len(head)]:
            raise ProtocolError(f"the {self.peer} is not speaking the zcopy protocol (got {head!r})")
        if len(self._buf) < PREAMBLE_SIZE:
            return NEED_DATA
        _, version = PREAMBLE.unpack_from(self._buf)
        del self._buf[:PREAMBLE_SIZE]
        self.version = version
        if version != VERSION:
            raise VersionError(f"the {self.peer} speaks protocol version {version}; we speak {VERSION}")
        self._state = _ST_START
        return self.next_event()


# --- authentication -----------------------------------------------------------------------------------------
# Each side proves it knows the token by an HMAC over both challenges and its role, so a proof can be neither
# replayed in another session (fresh nonces) nor reflected back to its author (role label).


def sender_proof(token: bytes, sender_nonce: bytes, receiver_nonce: bytes) -> bytes:
    return hmac.new(token, b"zcopy/1 sender\x00" + receiver_nonce + sender_nonce, hashlib.sha256).digest()


def receiver_proof(token: bytes, sender_nonce: bytes, receiver_nonce: bytes) -> bytes:
    return hmac.new(token, b"zcopy/1 receiver\x00" + sender_nonce + receiver_nonce, hashlib.sha256).digest()


def proof_ok(expected: bytes, got: bytes) -> bool:
    """Constant-time comparison, so timing does not leak how many bytes of a forged MAC were right."""
    return hmac.compare_digest(expected, got)
