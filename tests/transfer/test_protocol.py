"""Wire format: every stream fed whole, one byte at a time, in random splits and with trailing data."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zcopy.transfer import checksum
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import ProtocolError, VersionError

OPEN = p.Open(p.M_PLAIN).encode()
SENDER_NONCE = bytes(range(32))
RECEIVER_NONCE = bytes(range(32, 64))
BODY_A = b"hello, zero-copy world\n" * 3
ENTRIES = (
    p.Entry(b"tree", True, 0, 0o755, 1_700_000_000_000_000_000),
    p.Entry(b"tree/empty", True, 0, 0o700, 1_700_000_000_000_000_001),
    p.Entry(b"tree/a.txt", False, len(BODY_A), 0o644, 1_700_000_000_123_456_789),
    p.Entry("tree/ünïcode ☃".encode(), False, 0, 0o600, -5),
)


KEY = b"k" * 32
SMALL = b"small file body"


def sender_stream() -> tuple[bytes, list[object]]:
    """A complete sender → receiver session and the events a decoder must produce from it."""
    batch = p.Batch.build(KEY, [p.BatchItem(4, p.S_OK, b"\x04" * 16, SMALL),
                                p.BatchItem(5, p.S_SOURCE_CHANGED, b"", b"")])
    msgs: list[object] = [
        p.Open(p.M_PLAIN),
        p.Hello(p.FEATURES, SENDER_NONCE, checksum.XXH3, p.H_RESUME),
        p.Auth(p.sender_proof(b"tok", SENDER_NONCE, RECEIVER_NONCE)),
        p.Manifest(ENTRIES[:2]),
        p.Manifest(ENTRIES[2:]),
        p.ManifestEnd(len(ENTRIES), b"\x07" * 32),
        p.FileStart(2, 5, len(BODY_A) - 5),
        p.BodyData(BODY_A[5:]),
        p.Trailer(2, p.S_OK, b"\x01" * 16).sealed(KEY),
        p.Batch.decode(batch[p.HEADER_SIZE :]),
        p.FileStart(3, 0, 0),
        p.Trailer(3, p.S_SOURCE_CHANGED, b""),
        p.Done(4).sealed(KEY),
    ]
    wire = p.encode_preamble()
    for m in msgs:
        if isinstance(m, p.BodyData):
            wire += m.data
        elif isinstance(m, p.Batch):
            wire += batch
        else:
            wire += m.encode()  # type: ignore[attr-defined]
    return wire, msgs


def receiver_stream() -> tuple[bytes, list[object]]:
    ack = p.Ack.build(KEY, [p.AckItem(2, p.S_OK), p.AckItem(3, p.S_FAILED, 9, "source changed: ☃")])
    bye = p.Bye.build(KEY, {"route": "splice", "bytes": 42})
    msgs: list[object] = [
        p.Open(p.M_TLS),
        p.Welcome(p.F_AUTH | p.F_XXH3, True, RECEIVER_NONCE),
        p.AuthOk(p.receiver_proof(b"tok", SENDER_NONCE, RECEIVER_NONCE)),
        p.Plan((p.PlanEntry(p.P_NEW), p.PlanEntry(p.P_NEW), p.PlanEntry(p.P_PARTIAL, 5, b"\x02" * 16))),
        p.Plan((p.PlanEntry(p.P_EXISTS, 0, b"\x03" * 16),)),
        p.PlanEnd(False, 4, b"\x08" * 32),
        p.Ack.decode(ack[p.HEADER_SIZE :]),
        p.Bye.decode(bye[p.HEADER_SIZE :]),
    ]
    wire = p.encode_preamble()
    for m in msgs:
        wire += ack if isinstance(m, p.Ack) else bye if isinstance(m, p.Bye) else m.encode()  # type: ignore[attr-defined]
    return wire, msgs


def drain(dec: p.Decoder) -> list[object]:
    out: list[object] = []
    while True:
        ev = dec.next_event()
        if ev is p.NEED_DATA:
            return out
        out.append(ev)


def merge_body(events: list[object]) -> list[object]:
    """Body may arrive in any number of BodyData pieces; join adjacent ones for comparison."""
    out: list[object] = []
    for ev in events:
        if isinstance(ev, p.BodyData) and out and isinstance(out[-1], p.BodyData):
            out[-1] = p.BodyData(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


@pytest.mark.parametrize("stream,peer", [(sender_stream, "sender"), (receiver_stream, "receiver")])
@pytest.mark.parametrize("split", ["whole", "bytewise", "random"])
def test_stream_decodes_in_any_split(stream, peer, split) -> None:  # type: ignore[no-untyped-def]
    wire, expected = stream()
    dec = p.Decoder(peer)
    events: list[object] = []
    if split == "whole":
        chunks = [wire]
    elif split == "bytewise":
        chunks = [wire[i : i + 1] for i in range(len(wire))]
    else:
        cuts = sorted({int.from_bytes(os.urandom(2), "big") % len(wire) for _ in range(20)})
        chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    for c in chunks:
        dec.feed(c)
        events += drain(dec)
    assert merge_body(events) == expected
    assert dec.closed
    assert dec.version == p.VERSION


def test_trailing_data_after_final_frame_is_an_error() -> None:
    wire, _ = sender_stream()
    dec = p.Decoder("sender")
    dec.feed(wire + b"x")
    with pytest.raises(ProtocolError, match="after the sender's final frame"):
        drain(dec)


def test_trailing_data_of_next_frame_stays_buffered() -> None:
    # Two frames in one feed: the decoder returns the first and keeps the rest for the next call.
    wire = p.encode_preamble() + OPEN + p.Hello(0, SENDER_NONCE).encode()
    manifest = p.Manifest(()).encode()
    dec = p.Decoder("sender")
    dec.feed(wire + manifest[:3])
    assert drain(dec) == [p.Open(p.M_PLAIN), p.Hello(0, SENDER_NONCE)]
    assert dec.buffered == 3
    dec.feed(manifest[3:])
    assert drain(dec) == [p.Manifest(())]


def test_wanted_reads_never_overrun_into_the_body() -> None:
    """Reading exactly wanted() bytes each time leaves the whole body unread, ready for splice."""
    wire, _ = sender_stream()
    dec = p.Decoder("sender")
    pos = 0
    seen: list[object] = []
    while not dec.closed:
        if dec.body_remaining and not dec.buffered:
            n = dec.body_remaining  # the glue would splice these from the socket
            pos += n
            dec.skip_body(n)
            seen.append(("skipped", n))
            continue
        want = dec.wanted()
        assert want > 0
        dec.feed(wire[pos : pos + want])
        pos += want
        seen += drain(dec)
    assert pos == len(wire)
    assert ("skipped", len(BODY_A) - 5) in seen
    assert not any(isinstance(e, p.BodyData) for e in seen)


def test_skip_body_refuses_when_bytes_are_buffered() -> None:
    wire, _ = sender_stream()
    dec = p.Decoder("sender")
    dec.feed(wire)
    while not dec.body_remaining:
        dec.next_event()
    with pytest.raises(RuntimeError):
        dec.skip_body(1)


def test_bad_magic_is_named_at_once() -> None:
    dec = p.Decoder("sender")
    dec.feed(b"GE")
    with pytest.raises(ProtocolError, match="not speaking the zcopy protocol"):
        dec.next_event()


def test_unknown_version() -> None:
    dec = p.Decoder("receiver")
    dec.feed(p.encode_preamble(7) + p.Error(2, "x").encode())
    with pytest.raises(VersionError, match="version 7"):
        dec.next_event()


def test_error_frame_is_allowed_anywhere_and_final() -> None:
    dec = p.Decoder("sender")
    dec.feed(p.encode_preamble() + OPEN + p.Hello(0, SENDER_NONCE).encode() + p.Error(3, "nope ☃").encode())
    assert drain(dec) == [p.Open(p.M_PLAIN), p.Hello(0, SENDER_NONCE), p.Error(3, "nope ☃")]
    assert dec.closed


@pytest.mark.parametrize(
    "frames,match",
    [
        ([p.Hello(0, SENDER_NONCE)], "HELLO frame from the sender is out of order .after the preamble"),
        ([p.Open(0), p.Manifest(())], "MANIFEST frame from the sender is out of order"),
        ([p.Open(0), p.Hello(0, SENDER_NONCE), p.ManifestEnd(0, bytes(32)), p.Done(), p.Done()],
         "after the sender's final frame"),
        ([p.Open(0), p.Hello(0, SENDER_NONCE), p.Done()], "DONE frame .* out of order .after HELLO"),
        ([p.Open(0), p.Hello(0, SENDER_NONCE), p.Manifest(()), p.FileStart(0, 0, 0)],
         "FILE frame .* out of order .after MANIFEST"),
        ([p.Open(0), p.Hello(0, SENDER_NONCE), p.Auth(b"m" * 32), p.Auth(b"m" * 32)], "AUTH frame .* out of order"),
    ],
)
def test_frames_out_of_order(frames, match) -> None:  # type: ignore[no-untyped-def]
    dec = p.Decoder("sender")
    dec.feed(p.encode_preamble() + b"".join(f.encode() for f in frames))
    with pytest.raises(ProtocolError, match=match):
        drain(dec)


def test_trailer_must_follow_the_body() -> None:
    dec = p.Decoder("sender")
    dec.feed(p.encode_preamble() + OPEN + p.Hello(0, SENDER_NONCE).encode() + p.ManifestEnd(0, bytes(32)).encode()
             + p.FileStart(0, 0, 0).encode() + p.FileStart(0, 0, 0).encode())
    with pytest.raises(ProtocolError, match=r"FILE frame .* out of order .after a FILE body"):
        drain(dec)


def test_unknown_frame_type() -> None:
    dec = p.Decoder("receiver")
    dec.feed(p.encode_preamble() + struct.pack(">BI", 99, 0))
    with pytest.raises(ProtocolError, match="unknown frame type 99"):
        drain(dec)


def test_oversized_length_refused_before_payload_arrives() -> None:
    dec = p.Decoder("sender")
    dec.feed(p.encode_preamble() + OPEN + struct.pack(">BI", p.T_HELLO, 1 << 30))
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        drain(dec)


def _payload_error(ftype: int, payload: bytes, peer: p.Peer, prefix: bytes = b"") -> str:
    dec = p.Decoder(peer)
    dec.feed(p.encode_preamble() + prefix + struct.pack(">BI", ftype, len(payload)) + payload)
    with pytest.raises(ProtocolError) as info:
        drain(dec)
    return str(info.value)


HELLO = OPEN + p.Hello(0, SENDER_NONCE).encode()
WELCOME = OPEN + p.Welcome(0, False, RECEIVER_NONCE).encode()
PLANNED = WELCOME + p.PlanEnd(False, 0, bytes(32)).encode()


@pytest.mark.parametrize(
    "ftype,payload,peer,prefix,match",
    [
        (p.T_OPEN, b"\x07", "sender", b"", "OPEN frame: mode 7"),
        (p.T_HELLO, b"\x00" * 10, "sender", OPEN, "HELLO frame: truncated"),
        (p.T_HELLO, b"\x00" * 36 + b"\x09\x00", "sender", OPEN, "unknown checksum algorithm"),
        (p.T_HELLO, b"\x00" * 36 + b"\x01\x80", "sender", OPEN, "flags"),
        (p.T_WELCOME, b"\x00" * 4 + b"\x02" + RECEIVER_NONCE, "receiver", OPEN, "auth flag 2"),
        (p.T_MANIFEST, struct.pack(">I", 10**6), "sender", HELLO, "cannot fit"),
        (p.T_MANIFEST, struct.pack(">I", 1) + struct.pack(">BIqQH", 1, 0, 0, 5, 1) + b"d",
         "sender", HELLO, "directory entry with a size"),
        (p.T_MANIFEST, struct.pack(">I", 1) + struct.pack(">BIqQH", 0, 0, 0, 5, 9) + b"d",
         "sender", HELLO, "truncated"),
        (p.T_MANIFEST, struct.pack(">I", 1) + struct.pack(">BIqQH", 3, 0, 0, 0, 1) + b"d",
         "sender", HELLO, "entry kind 3"),
        (p.T_MANIFEST, struct.pack(">I", 1) + struct.pack(">BIqQH", 2, 0, 0, 0, 1) + b"d",
         "sender", HELLO, "symlink target of 0 bytes"),
        (p.T_MANIFEST, struct.pack(">I", 0) + b"zz", "sender", HELLO, "2 trailing bytes"),
        (p.T_BATCH, struct.pack(">I", 1) + struct.pack(">IBB", 0, 0, 0) + struct.pack(">I", 1 << 20) + bytes(32),
         "sender", HELLO + p.ManifestEnd(0, bytes(32)).encode(), "a body of 1048576 bytes"),
        (p.T_BATCH, struct.pack(">I", 1) + struct.pack(">IBB", 0, 5, 0) + struct.pack(">I", 0) + bytes(32),
         "sender", HELLO + p.ManifestEnd(0, bytes(32)).encode(), "status 5"),
        (p.T_PLAN, struct.pack(">I", 1) + struct.pack(">BQB", 7, 0, 0), "receiver", WELCOME,
         "entry state 7"),
        (p.T_ACK, struct.pack(">I", 1) + struct.pack(">IBHH", 0, 1, 0, 0) + bytes(32), "receiver", PLANNED,
         "status 1"),
        (p.T_BYE, bytes(32) + b"[1]", "receiver", PLANNED, "not an object"),
        (p.T_BYE, bytes(32) + b"\xff", "receiver", PLANNED, "malformed BYE"),
    ],
)
def test_malformed_payloads(ftype, payload, peer, prefix, match) -> None:  # type: ignore[no-untyped-def]
    assert match in _payload_error(ftype, payload, peer, prefix) or pytest.fail(
        _payload_error(ftype, payload, peer, prefix))


def test_encoders_refuse_oversized_payloads() -> None:
    with pytest.raises(ValueError):
        p.Bye.build(KEY, {"x": "y" * 70000})


def test_hmac_proofs_bind_token_role_both_nonces_and_certificate() -> None:
    good = p.sender_proof(b"secret", SENDER_NONCE, RECEIVER_NONCE)
    assert p.proof_ok(good, p.sender_proof(b"secret", SENDER_NONCE, RECEIVER_NONCE))
    # Bound to the receiver's certificate: a man in the middle's certificate gives another proof.
    fp = b"\x01" * 32
    assert not p.proof_ok(p.sender_proof(b"secret", SENDER_NONCE, RECEIVER_NONCE, fp),
                          p.sender_proof(b"secret", SENDER_NONCE, RECEIVER_NONCE, b"\x02" * 32))
    assert not p.proof_ok(p.receiver_proof(b"secret", SENDER_NONCE, RECEIVER_NONCE, fp),
                          p.receiver_proof(b"secret", SENDER_NONCE, RECEIVER_NONCE))
    assert p.session_key(b"secret", SENDER_NONCE, RECEIVER_NONCE, fp) != p.session_key(
        b"secret", SENDER_NONCE, RECEIVER_NONCE)
    assert p.session_key(b"secret", SENDER_NONCE, RECEIVER_NONCE) != p.session_key(None, SENDER_NONCE, RECEIVER_NONCE)
    assert not p.proof_ok(good, p.sender_proof(b"Secret", SENDER_NONCE, RECEIVER_NONCE))
    assert not p.proof_ok(good, p.sender_proof(b"secret", RECEIVER_NONCE, SENDER_NONCE))
    # A receiver cannot reflect the sender's proof back as its own.
    assert not p.proof_ok(good, p.receiver_proof(b"secret", SENDER_NONCE, RECEIVER_NONCE))
    assert b"secret" not in good


def test_token_never_appears_on_the_wire() -> None:
    token = b"correct horse battery staple"
    wire = (p.Auth(p.sender_proof(token, SENDER_NONCE, RECEIVER_NONCE)).encode()
            + p.AuthOk(p.receiver_proof(token, SENDER_NONCE, RECEIVER_NONCE)).encode())
    assert token not in wire and token[:8] not in wire


def test_macs_bind_label_and_content() -> None:
    t = p.Trailer(1, p.S_OK, b"d" * 16).sealed(KEY)
    p.verify(KEY, b"trailer", t.signed(), t.mac, "x")
    with pytest.raises(p.IntegrityError, match="altered"):
        p.verify(KEY, b"trailer", p.Trailer(1, p.S_OK, b"e" * 16).signed(), t.mac, "x")
    with pytest.raises(p.IntegrityError):
        p.verify(b"other key", b"trailer", t.signed(), t.mac, "x")
    with pytest.raises(p.IntegrityError):  # a trailer's MAC is not a DONE's
        p.verify(KEY, b"done", t.signed(), t.mac, "x")
    batch = p.Batch.decode(p.Batch.build(KEY, [p.BatchItem(0, p.S_OK, b"a" * 16, b"x")])[p.HEADER_SIZE :])
    p.verify(KEY, b"batch", batch.signed, batch.mac, "x")
    a, b = p.Transcript(), p.Transcript()
    a.add(b"ab")
    a.add(b"c")
    b.add(b"a")
    b.add(b"bc")
    assert a.digest() != b.digest()  # chunk boundaries are part of what is authenticated


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["sender", "receiver"]))
def test_arbitrary_bytes_give_events_or_protocol_error_never_a_crash(data: bytes, peer: p.Peer) -> None:
    dec = p.Decoder(peer)
    dec.feed(p.encode_preamble() + OPEN + data)
    try:
        while True:
            ev = dec.next_event()
            if ev is p.NEED_DATA:
                break
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_valid_streams_never_crash(data: st.DataObject) -> None:
    wire, _ = data.draw(st.sampled_from([sender_stream, receiver_stream]))()
    peer: p.Peer = "sender" if wire == sender_stream()[0] else "receiver"
    buf = bytearray(wire)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    dec = p.Decoder(peer)
    dec.feed(bytes(buf))
    try:
        while dec.next_event() is not p.NEED_DATA:
            pass
    except ProtocolError:
        pass
