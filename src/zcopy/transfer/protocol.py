"""The zcopy send/recv wire format, version 2 (docs/protocol.md), pure: bytes in, events out; messages in, bytes out.

Owns the preamble (magic + version), the clear-text OPEN exchange that says whether TLS follows, the frame layout,
each message's encoding, the per-direction order of frames, the HMAC challenge-response bound to the TLS
certificate, the session key and the MACs that authenticate the manifest, the plan, every file digest, every ACK
and the end of each stream. No sockets, no files: the sender/receiver glue feeds received bytes to a Decoder and
writes what the encoders return.
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
from zcopy.transfer.errors import E_INTEGRITY, ProtocolError, TransferError, VersionError

MAGIC: Final = b"ZCPY"
VERSION: Final = 2
# Preamble: magic (4) + version (u16 big-endian). Frozen across versions, so peers of any version can tell
# each other "I speak version N" before anything else is parsed.
PREAMBLE: Final = struct.Struct(">4sH")
PREAMBLE_SIZE: Final = PREAMBLE.size

# Feature bits exchanged in HELLO/WELCOME; the session uses the intersection.
F_AUTH: Final = 1 << 0  # HMAC-SHA256 challenge-response
F_RESUME: Final = 1 << 1  # per-file resume offsets in PLAN
F_XXH3: Final = 1 << 2
F_SHA256: Final = 1 << 3
F_LINKS: Final = 1 << 4  # symlink entries (only when both users asked for --links)
FEATURES: Final = F_AUTH | F_RESUME | F_XXH3 | F_SHA256 | F_LINKS
ALGO_FEATURE: Final = {checksum.NONE: 0, checksum.XXH3: F_XXH3, checksum.SHA256: F_SHA256}

# OPEN modes: what the rest of the connection is.
M_PLAIN: Final = 0  # frames in the clear on the TCP stream (zero-copy bodies)
M_TLS: Final = 1  # a TLS 1.3 handshake follows, then every frame inside TLS
MODE_NAMES: Final = {M_PLAIN: "plain", M_TLS: "tls1.3"}

# HELLO flags.
H_RESUME: Final = 1 << 0
H_LINKS: Final = 1 << 1

NONCE_SIZE: Final = 32  # 256-bit challenges: a replayed or guessed challenge is out of reach
MAC_SIZE: Final = 32  # HMAC-SHA256 output
FINGERPRINT_SIZE: Final = 32  # SHA-256 of the receiver's certificate (DER)

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
T_BATCH: Final = 12
T_MANIFEST_END: Final = 13
T_PLAN_END: Final = 14
T_ERROR: Final = 15
T_OPEN: Final = 16

# Files up to this size travel inside BATCH frames (read into user space, hashed there, many per write) instead
# of FILE + body + TRAILER (sendfile/splice): below ~64 KiB the per-file syscalls of the zero-copy path cost more
# than copying the bytes (docs/benchmarks.md, transfer: 4 KiB files).
SMALL_FILE_MAX: Final = 64 << 10
# A BATCH frame is flushed once its payload reaches 1 MiB: one socket write of about a socket buffer, and the
# receiver holds at most this much per frame.
BATCH_TARGET: Final = 1 << 20
# Entries per MANIFEST / PLAN chunk: bounded frames however large the tree (a chunk of 4096 entries with
# 255-byte names stays near 1 MiB).
CHUNK_ENTRIES: Final = 4096

# Largest payload accepted per frame type, checked as soon as the header arrives so a hostile length cannot
# make us buffer gigabytes.
_MAX_ENTRY = 1 + 4 + 8 + 8 + 2 + 4095 + 4095  # fixed part + longest name + longest symlink target
MAX_PAYLOAD: Final[dict[int, int]] = {
    T_OPEN: 1,
    T_HELLO: 4 + NONCE_SIZE + 1 + 1,
    T_WELCOME: 4 + 1 + NONCE_SIZE,
    T_AUTH: MAC_SIZE,
    T_AUTH_OK: MAC_SIZE,
    T_MANIFEST: 4 + CHUNK_ENTRIES * _MAX_ENTRY,
    T_MANIFEST_END: 4 + MAC_SIZE,
    T_PLAN: 4 + CHUNK_ENTRIES * (1 + 8 + 1 + 255),
    T_PLAN_END: 1 + 4 + MAC_SIZE,
    T_FILE: 4 + 8 + 8,
    T_TRAILER: 4 + 1 + 1 + 255 + MAC_SIZE,
    # One file of SMALL_FILE_MAX may push a batch past BATCH_TARGET; per-item overhead is at most 43 bytes.
    T_BATCH: 4 + BATCH_TARGET + SMALL_FILE_MAX + 8192 * 43 + MAC_SIZE,
    T_ACK: 4 + 8192 * (4 + 1 + 2 + 2 + 1024) + MAC_SIZE,
    T_DONE: 4 + MAC_SIZE,
    T_BYE: MAC_SIZE + (64 << 10),
    T_ERROR: 2 + 2 + 65535,
}
MAX_BATCH_ITEMS: Final = 8192
MAX_ACK_ITEMS: Final = 8192
MAX_ACK_MESSAGE: Final = 1024

# Entry kinds.
K_FILE: Final = 0
K_DIR: Final = 1
K_LINK: Final = 2

# PLAN entry states.
P_NEW: Final = 0  # nothing there: send from 0
P_PARTIAL: Final = 1  # a partial of `have` bytes with `digest` over them
P_EXISTS: Final = 2  # the final name exists with `have` bytes and `digest` (resume: skip if identical)

# TRAILER / BATCH item / ACK statuses.
S_OK: Final = 0
S_SOURCE_CHANGED: Final = 1  # TRAILER: the sender saw the source shrink/grow/change; do not publish
S_FAILED: Final = 2  # ACK: not published, see code + message

Peer = Literal["sender", "receiver"]

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_ENTRY = struct.Struct(">BIqQH")  # kind, mode, mtime_ns, size (symlink: target length), name length
_PLAN_ENTRY = struct.Struct(">BQB")  # state, have, digest length
_FILE = struct.Struct(">IQQ")  # index, offset, length
_ITEM = struct.Struct(">IBB")  # batch item: index, status, digest length (then digest, u32 length, body)
_ACK_ITEM = struct.Struct(">IBHH")  # index, status, code, message length


class IntegrityError(TransferError):
    """A MAC did not verify: the stream was altered on the way (or the peer does not hold the session key)."""

    code = E_INTEGRITY


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
        if self.pos + st.size > len(self.data):
            raise ProtocolError(f"malformed {self.what} frame: truncated payload")
        values: tuple[int, ...] = st.unpack_from(self.data, self.pos)
        self.pos += st.size
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


# --- keys and MACs ------------------------------------------------------------------------------------------
# The token never travels. Each side proves it by an HMAC over both challenges, its role and the receiver's
# certificate fingerprint (empty in plain mode): a man in the middle who terminates TLS with its own certificate
# makes the two ends compute over different fingerprints, so neither proof verifies and he cannot forge one
# without the token. The session key, derived the same way, authenticates everything that decides what is
# published (manifest, plan, digests, ACKs, the end of each stream), in plain mode too.


def _binding(fingerprint: bytes) -> bytes:
    return _U8.pack(len(fingerprint)) + fingerprint


def sender_proof(token: bytes, sender_nonce: bytes, receiver_nonce: bytes, fingerprint: bytes = b"") -> bytes:
    msg = b"zcopy/2 sender\x00" + _binding(fingerprint) + receiver_nonce + sender_nonce
    return hmac.digest(token, msg, "sha256")


def receiver_proof(token: bytes, sender_nonce: bytes, receiver_nonce: bytes, fingerprint: bytes = b"") -> bytes:
    msg = b"zcopy/2 receiver\x00" + _binding(fingerprint) + sender_nonce + receiver_nonce
    return hmac.digest(token, msg, "sha256")


def proof_ok(expected: bytes, got: bytes) -> bool:
    """Constant-time comparison, so timing does not leak how many bytes of a forged MAC were right."""
    return hmac.compare_digest(expected, got)


def session_key(token: bytes | None, sender_nonce: bytes, receiver_nonce: bytes, fingerprint: bytes = b"") -> bytes:
    """The key of every MAC in the session. Without a token it is public (anyone who sees both nonces can compute
    it): then the MACs catch accidental corruption only, which docs/protocol.md says."""
    msg = b"zcopy/2 session\x00" + _binding(fingerprint) + sender_nonce + receiver_nonce
    return hmac.digest(token or b"", msg, "sha256")


def mac(key: bytes, label: bytes, data: bytes) -> bytes:
    # The label (with a NUL no label contains) keeps a MAC of one kind from being replayed as another.
    return hmac.digest(key, label + b"\x00" + data, "sha256")


def verify(key: bytes, label: bytes, data: bytes, got: bytes, what: str) -> None:
    if not hmac.compare_digest(mac(key, label, data), got):
        raise IntegrityError(f"{what} failed its integrity check: the stream was altered on the way, or the "
                             "peer does not hold the session key")


class Transcript:
    """Running SHA-256 over the payloads that a later *_END frame authenticates (HELLO + MANIFEST chunks;
    WELCOME + PLAN chunks)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def add(self, payload: bytes) -> None:
        self._h.update(_U32.pack(len(payload)))
        self._h.update(payload)

    def digest(self) -> bytes:
        return self._h.digest()


# --- messages -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Open:
    """Both directions, in the clear right after the preamble: the mode this side insists on. Each side refuses a
    peer whose mode differs from its own, so there is no negotiation to downgrade."""

    mode: int

    def encode(self) -> bytes:
        return _frame(T_OPEN, _U8.pack(self.mode))

    @staticmethod
    def decode(data: bytes) -> Open:
        r = _Reader("OPEN", data)
        (mode,) = r.unpack(_U8)
        if mode not in MODE_NAMES:
            raise ProtocolError(f"malformed OPEN frame: mode {mode}")
        r.end()
        return Open(mode)


@dataclass(frozen=True)
class Hello:
    """Sender → receiver: features offered, the sender's challenge, the checksum algorithm and session flags."""

    features: int
    nonce: bytes
    algo: int = checksum.XXH3
    flags: int = 0

    def encode(self) -> bytes:
        return _frame(T_HELLO, _U32.pack(self.features) + self.nonce + _U8.pack(self.algo) + _U8.pack(self.flags))

    @staticmethod
    def decode(data: bytes) -> Hello:
        r = _Reader("HELLO", data)
        (features,) = r.unpack(_U32)
        nonce = r.take(NONCE_SIZE)
        (algo,) = r.unpack(_U8)
        if algo not in checksum.NAMES:
            raise ProtocolError(f"malformed HELLO frame: unknown checksum algorithm id {algo}")
        (flags,) = r.unpack(_U8)
        if flags & ~(H_RESUME | H_LINKS):
            raise ProtocolError(f"malformed HELLO frame: flags {flags:#x}")
        r.end()
        return Hello(features, nonce, algo, flags)


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
        m = r.take(MAC_SIZE)
        r.end()
        return Auth(m)


@dataclass(frozen=True)
class AuthOk:
    """Receiver → sender: HMAC proving the receiver knows the token too (mutual authentication)."""

    mac: bytes

    def encode(self) -> bytes:
        return _frame(T_AUTH_OK, self.mac)

    @staticmethod
    def decode(data: bytes) -> AuthOk:
        r = _Reader("AUTH_OK", data)
        m = r.take(MAC_SIZE)
        r.end()
        return AuthOk(m)


@dataclass(frozen=True)
class Entry:
    """One manifest entry: a file (with size), a directory (size 0) or, with --links, a symlink (`target`);
    name: relative, '/'-separated."""

    name: bytes
    is_dir: bool
    size: int
    mode: int
    mtime_ns: int
    target: bytes | None = None  # symlink target; None for files and directories

    @property
    def is_link(self) -> bool:
        return self.target is not None

    @property
    def is_file(self) -> bool:
        return not self.is_dir and self.target is None


@dataclass(frozen=True)
class Manifest:
    """Sender → receiver: one chunk of entries (directories before their contents). Chunks stream while the
    sender walks; MANIFEST_END authenticates them all."""

    entries: tuple[Entry, ...]

    def encode(self) -> bytes:
        parts = [_U32.pack(len(self.entries))]
        for e in self.entries:
            if e.target is not None:
                parts.append(_ENTRY.pack(K_LINK, e.mode, e.mtime_ns, len(e.target), len(e.name)))
                parts.append(e.name)
                parts.append(e.target)
            else:
                parts.append(_ENTRY.pack(K_DIR if e.is_dir else K_FILE, e.mode, e.mtime_ns, e.size, len(e.name)))
                parts.append(e.name)
        return _frame(T_MANIFEST, b"".join(parts))

    @staticmethod
    def decode(data: bytes) -> Manifest:
        r = _Reader("MANIFEST", data)
        (count,) = r.unpack(_U32)
        # Each entry needs at least its fixed part: refuse a count the payload cannot hold before looping.
        if count * _ENTRY.size > len(data):
            raise ProtocolError(f"malformed MANIFEST frame: {count} entries cannot fit in {len(data)} bytes")
        entries = []
        for _ in range(count):
            kind, mode, mtime_ns, size, name_len = r.unpack(_ENTRY)
            if kind == K_DIR and size:
                raise ProtocolError("malformed MANIFEST frame: a directory entry with a size")
            name = r.take(name_len)
            if kind == K_LINK:
                if not 0 < size <= 4095:
                    raise ProtocolError(f"malformed MANIFEST frame: symlink target of {size} bytes")
                entries.append(Entry(name, False, 0, mode, mtime_ns, r.take(size)))
            elif kind in (K_FILE, K_DIR):
                entries.append(Entry(name, kind == K_DIR, size, mode, mtime_ns))
            else:
                raise ProtocolError(f"malformed MANIFEST frame: entry kind {kind}")
        r.end()
        return Manifest(tuple(entries))


def manifest_mac(key: bytes, transcript: bytes, count: int) -> bytes:
    return mac(key, b"manifest", transcript + _U32.pack(count))


@dataclass(frozen=True)
class ManifestEnd:
    """Sender → receiver: the manifest had `count` entries; `mac` covers HELLO and every MANIFEST payload."""

    count: int
    mac: bytes

    def encode(self) -> bytes:
        return _frame(T_MANIFEST_END, _U32.pack(self.count) + self.mac)

    @staticmethod
    def decode(data: bytes) -> ManifestEnd:
        r = _Reader("MANIFEST_END", data)
        (count,) = r.unpack(_U32)
        m = r.take(MAC_SIZE)
        r.end()
        return ManifestEnd(count, m)


@dataclass(frozen=True)
class PlanEntry:
    state: int
    have: int = 0
    digest: bytes = b""


@dataclass(frozen=True)
class Plan:
    """Receiver → sender: one chunk of plan entries, in manifest order: what is already there and its digest."""

    entries: tuple[PlanEntry, ...]

    def encode(self) -> bytes:
        parts = [_U32.pack(len(self.entries))]
        for e in self.entries:
            parts.append(_PLAN_ENTRY.pack(e.state, e.have, len(e.digest)))
            parts.append(e.digest)
        return _frame(T_PLAN, b"".join(parts))

    @staticmethod
    def decode(data: bytes) -> Plan:
        r = _Reader("PLAN", data)
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
        return Plan(tuple(entries))


def plan_mac(key: bytes, transcript: bytes, overwrite: bool, count: int) -> bytes:
    return mac(key, b"plan", transcript + _U8.pack(overwrite) + _U32.pack(count))


@dataclass(frozen=True)
class PlanEnd:
    """Receiver → sender: the plan is complete; `mac` covers WELCOME, every PLAN payload, overwrite and count."""

    overwrite: bool
    count: int
    mac: bytes

    def encode(self) -> bytes:
        return _frame(T_PLAN_END, _U8.pack(self.overwrite) + _U32.pack(self.count) + self.mac)

    @staticmethod
    def decode(data: bytes) -> PlanEnd:
        r = _Reader("PLAN_END", data)
        (overwrite,) = r.unpack(_U8)
        if overwrite > 1:
            raise ProtocolError(f"malformed PLAN_END frame: overwrite flag {overwrite}")
        (count,) = r.unpack(_U32)
        m = r.take(MAC_SIZE)
        r.end()
        return PlanEnd(bool(overwrite), count, m)


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


def trailer_signed(index: int, status: int, digest: bytes) -> bytes:
    return _U32.pack(index) + _U8.pack(status) + _U8.pack(len(digest)) + digest


@dataclass(frozen=True)
class Trailer:
    """Sender → receiver after the body: the whole file's digest, or S_SOURCE_CHANGED (do not publish); `mac`
    = MAC(key, "trailer", index, status, digest)."""

    index: int
    status: int
    digest: bytes
    mac: bytes = bytes(MAC_SIZE)

    def encode(self) -> bytes:
        return _frame(T_TRAILER, trailer_signed(self.index, self.status, self.digest) + self.mac)

    def sealed(self, key: bytes) -> Trailer:
        return Trailer(self.index, self.status, self.digest, mac(key, b"trailer", self.signed()))

    def signed(self) -> bytes:
        return trailer_signed(self.index, self.status, self.digest)

    @staticmethod
    def decode(data: bytes) -> Trailer:
        r = _Reader("TRAILER", data)
        (index,) = r.unpack(_U32)
        (status,) = r.unpack(_U8)
        if status not in (S_OK, S_SOURCE_CHANGED):
            raise ProtocolError(f"malformed TRAILER frame: status {status}")
        (dlen,) = r.unpack(_U8)
        digest = r.take(dlen)
        m = r.take(MAC_SIZE)
        r.end()
        return Trailer(index, status, digest, m)


@dataclass(frozen=True)
class BatchItem:
    """One small file inside a BATCH: its whole body (or none, with S_SOURCE_CHANGED) and its digest."""

    index: int
    status: int
    digest: bytes
    body: bytes | memoryview

    def header(self) -> bytes:
        return _ITEM.pack(self.index, self.status, len(self.digest)) + self.digest + _U32.pack(len(self.body))


@dataclass(frozen=True)
class Batch:
    """Sender → receiver: many small files in one frame (one write on the wire, one read on the receiver).
    `mac` covers every item's index, status, digest and length (the digests cover the bodies)."""

    items: tuple[BatchItem, ...]
    mac: bytes = bytes(MAC_SIZE)
    signed: bytes = field(default=b"", compare=False, repr=False)

    @staticmethod
    def build(key: bytes, items: list[BatchItem]) -> bytes:
        """The encoded frame for `items`, sealed with `key` (the sender's fast path: one join)."""
        headers = [it.header() for it in items]
        signed = b"".join(headers)
        parts: list[bytes | memoryview] = [_U32.pack(len(items))]
        for h, it in zip(headers, items, strict=True):
            parts.append(h)
            parts.append(it.body)
        parts.append(mac(key, b"batch", signed))
        return _frame(T_BATCH, b"".join(parts))

    @staticmethod
    def decode(data: bytes) -> Batch:
        r = _Reader("BATCH", data)
        (count,) = r.unpack(_U32)
        if count > MAX_BATCH_ITEMS or count * (_ITEM.size + 4) > len(data):
            raise ProtocolError(f"malformed BATCH frame: {count} items")
        view = memoryview(data)
        items = []
        signed = []
        for _ in range(count):
            start = r.pos
            index, status, dlen = r.unpack(_ITEM)
            if status not in (S_OK, S_SOURCE_CHANGED):
                raise ProtocolError(f"malformed BATCH frame: status {status}")
            digest = r.take(dlen)
            (length,) = r.unpack(_U32)
            if length > SMALL_FILE_MAX:
                raise ProtocolError(f"malformed BATCH frame: a body of {length} bytes")
            signed.append(data[start : r.pos])
            if r.pos + length > len(data):
                raise ProtocolError("malformed BATCH frame: truncated payload")
            items.append(BatchItem(index, status, digest, view[r.pos : r.pos + length]))
            r.pos += length
        m = r.take(MAC_SIZE)
        r.end()
        return Batch(tuple(items), m, b"".join(signed))


@dataclass(frozen=True)
class AckItem:
    index: int
    status: int
    code: int = 0
    message: str = ""


@dataclass(frozen=True)
class Ack:
    """Receiver → sender: entries published (S_OK) or not (S_FAILED, with code and message), one frame per
    durability batch; `mac` covers the whole payload before it."""

    items: tuple[AckItem, ...]
    mac: bytes = bytes(MAC_SIZE)
    signed: bytes = field(default=b"", compare=False, repr=False)

    @staticmethod
    def body(items: tuple[AckItem, ...] | list[AckItem]) -> bytes:
        parts = [_U32.pack(len(items))]
        for it in items:
            msg = it.message.encode("utf-8")[:MAX_ACK_MESSAGE]
            parts.append(_ACK_ITEM.pack(it.index, it.status, it.code, len(msg)))
            parts.append(msg)
        return b"".join(parts)

    @staticmethod
    def build(key: bytes, items: tuple[AckItem, ...] | list[AckItem]) -> bytes:
        signed = Ack.body(items)
        return _frame(T_ACK, signed + mac(key, b"ack", signed))

    @staticmethod
    def decode(data: bytes) -> Ack:
        r = _Reader("ACK", data)
        (count,) = r.unpack(_U32)
        if count > MAX_ACK_ITEMS or count * _ACK_ITEM.size > len(data):
            raise ProtocolError(f"malformed ACK frame: {count} items")
        items = []
        for _ in range(count):
            index, status, code, mlen = r.unpack(_ACK_ITEM)
            if status not in (S_OK, S_FAILED):
                raise ProtocolError(f"malformed ACK frame: status {status}")
            items.append(AckItem(index, status, code, r.take(mlen).decode("utf-8", "replace")))
        signed = data[: r.pos]
        m = r.take(MAC_SIZE)
        r.end()
        return Ack(tuple(items), m, signed)


@dataclass(frozen=True)
class Done:
    """Sender → receiver: no more files; `count` files had a TRAILER or BATCH item (a truncated stream is caught)."""

    count: int = 0
    mac: bytes = bytes(MAC_SIZE)

    def sealed(self, key: bytes) -> Done:
        return Done(self.count, mac(key, b"done", _U32.pack(self.count)))

    def signed(self) -> bytes:
        return _U32.pack(self.count)

    def encode(self) -> bytes:
        return _frame(T_DONE, _U32.pack(self.count) + self.mac)

    @staticmethod
    def decode(data: bytes) -> Done:
        r = _Reader("DONE", data)
        (count,) = r.unpack(_U32)
        m = r.take(MAC_SIZE)
        r.end()
        return Done(count, m)


@dataclass(frozen=True)
class Bye:
    """Receiver → sender, last frame: MAC, then the receiver's summary (routes, bytes, files), a JSON object."""

    summary: dict[str, object] = field(default_factory=dict)
    mac: bytes = bytes(MAC_SIZE)
    signed: bytes = field(default=b"", compare=False, repr=False)

    @staticmethod
    def build(key: bytes, summary: dict[str, object]) -> bytes:
        body = json.dumps(summary, separators=(",", ":")).encode()
        return _frame(T_BYE, mac(key, b"bye", body) + body)

    def encode(self) -> bytes:
        return _frame(T_BYE, self.mac + json.dumps(self.summary, separators=(",", ":")).encode())

    @staticmethod
    def decode(data: bytes) -> Bye:
        r = _Reader("BYE", data)
        m = r.take(MAC_SIZE)
        body = data[MAC_SIZE:]
        try:
            summary = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"malformed BYE frame: {exc}") from None
        if not isinstance(summary, dict):
            raise ProtocolError("malformed BYE frame: summary is not an object")
        return Bye(summary, m, body)


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


Message = (Open | Hello | Welcome | Auth | AuthOk | Manifest | ManifestEnd | Plan | PlanEnd | FileStart | Trailer
           | Batch | Ack | Done | Bye | Error)

_DECODERS: dict[int, Callable[[bytes], Message]] = {
    T_OPEN: Open.decode,
    T_HELLO: Hello.decode,
    T_WELCOME: Welcome.decode,
    T_AUTH: Auth.decode,
    T_AUTH_OK: AuthOk.decode,
    T_MANIFEST: Manifest.decode,
    T_MANIFEST_END: ManifestEnd.decode,
    T_PLAN: Plan.decode,
    T_PLAN_END: PlanEnd.decode,
    T_FILE: FileStart.decode,
    T_TRAILER: Trailer.decode,
    T_BATCH: Batch.decode,
    T_ACK: Ack.decode,
    T_DONE: Done.decode,
    T_BYE: Bye.decode,
    T_ERROR: Error.decode,
}
_TYPE_NAMES = {
    T_OPEN: "OPEN", T_HELLO: "HELLO", T_WELCOME: "WELCOME", T_AUTH: "AUTH", T_AUTH_OK: "AUTH_OK",
    T_MANIFEST: "MANIFEST", T_MANIFEST_END: "MANIFEST_END", T_PLAN: "PLAN", T_PLAN_END: "PLAN_END",
    T_FILE: "FILE", T_TRAILER: "TRAILER", T_BATCH: "BATCH", T_ACK: "ACK", T_DONE: "DONE", T_BYE: "BYE",
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

_FILES: Final = frozenset({T_FILE, T_BATCH, T_DONE})
_ALLOWED: Final[dict[Peer, dict[int, frozenset[int]]]] = {
    "sender": {
        _ST_START: frozenset({T_OPEN}),
        T_OPEN: frozenset({T_HELLO}),
        T_HELLO: frozenset({T_AUTH, T_MANIFEST, T_MANIFEST_END}),
        T_AUTH: frozenset({T_MANIFEST, T_MANIFEST_END}),
        T_MANIFEST: frozenset({T_MANIFEST, T_MANIFEST_END}),
        T_MANIFEST_END: _FILES,
        _ST_BODY_DONE: frozenset({T_TRAILER}),
        T_TRAILER: _FILES,
        T_BATCH: _FILES,
    },
    "receiver": {
        _ST_START: frozenset({T_OPEN}),
        T_OPEN: frozenset({T_WELCOME}),
        T_WELCOME: frozenset({T_AUTH_OK, T_PLAN, T_PLAN_END}),
        T_AUTH_OK: frozenset({T_PLAN, T_PLAN_END}),
        T_PLAN: frozenset({T_PLAN, T_PLAN_END}),
        T_PLAN_END: frozenset({T_ACK, T_BYE}),
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
    report them with skip_body(n), which requires that none are buffered here. `last_payload` is the payload of
    the last frame returned (the glue feeds MANIFEST/PLAN payloads to a Transcript).
    """

    def __init__(self, peer: Peer) -> None:
        self.peer: Peer = peer
        self._buf = bytearray()
        self._state = _ST_PREAMBLE
        self.body_remaining = 0
        self.version: int | None = None
        self.last_payload = b""

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
        self.last_payload = payload
        self._state = _ST_CLOSED if ftype in _FINAL else ftype
        if isinstance(msg, FileStart) and msg.length:
            self.body_remaining = msg.length
        elif isinstance(msg, FileStart):
            self._state = _ST_BODY_DONE
        return msg

    def _preamble(self) -> Event:
        # Check the magic on the bytes we have so a non-zcopy peer (an HTTP client, a TLS ClientHello) is named
        # at once.
        head = bytes(self._buf[: len(MAGIC)])
        if head != MAGIC[: len(head)]:
            hint = " (a TLS handshake: is it an older or foreign client?)" if head[:1] == b"\x16" else ""
            raise ProtocolError(f"the {self.peer} is not speaking the zcopy protocol (got {head!r}){hint}")
        if len(self._buf) < PREAMBLE_SIZE:
            return NEED_DATA
        _, version = PREAMBLE.unpack_from(self._buf)
        del self._buf[:PREAMBLE_SIZE]
        self.version = version
        if version != VERSION:
            raise VersionError(f"the {self.peer} speaks protocol version {version}; we speak {VERSION} "
                               "(upgrade the older side)")
        self._state = _ST_START
        return self.next_event()
