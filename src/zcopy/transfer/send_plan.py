"""The sender's manifest and plan phases: stream the manifest in chunks sealed by MANIFEST_END, read the
receiver's authenticated PLAN, and decide which files (and from which offset) to send."""

from __future__ import annotations

import os

from zcopy import FileChannel
from zcopy.transfer import checksum, hashing
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import E_EXISTS, ProtocolError, TransferError
from zcopy.transfer.handshake import Agreed
from zcopy.transfer.results import SendResult
from zcopy.transfer.sources import Source
from zcopy.transfer.stream import Stream


def send_manifest(st: Stream, agreed: Agreed, entries: list[p.Entry]) -> None:
    """The manifest streams in chunks (no size limit); MANIFEST_END authenticates HELLO and every chunk."""
    mt = agreed.manifest
    for i in range(0, len(entries), p.CHUNK_ENTRIES):
        frame = p.Manifest(tuple(entries[i : i + p.CHUNK_ENTRIES])).encode()
        mt.add(frame[p.HEADER_SIZE :])
        st.send(frame)
    st.send(p.ManifestEnd(len(entries), p.manifest_mac(agreed.key, mt.digest(), len(entries))).encode())


def read_plan(st: Stream, agreed: Agreed, count: int) -> tuple[list[p.PlanEntry], bool]:
    """The receiver's plan, one entry per manifest entry, and whether it allows overwriting."""
    plan: list[p.PlanEntry] = []
    while True:
        ev = st.next()
        if isinstance(ev, p.Plan):
            agreed.plan.add(st.dec.last_payload)
            plan += ev.entries
            if len(plan) > count:
                raise ProtocolError(f"PLAN has more entries than the {count} sent")
            continue
        if not isinstance(ev, p.PlanEnd):
            raise ProtocolError(f"expected PLAN or PLAN_END from the receiver, got {type(ev).__name__}")
        break
    if not p.proof_ok(p.plan_mac(agreed.key, agreed.plan.digest(), ev.overwrite, ev.count), ev.mac):
        raise p.IntegrityError("the receiver's plan failed its integrity check: the stream was altered on "
                               "the way, or the peer does not hold the session key")
    if ev.count != count or len(plan) != count:
        raise ProtocolError(f"PLAN has {len(plan)} entries for {count} sent")
    return plan, ev.overwrite


def open_source(src: Source) -> FileChannel:
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NOFOLLOW if src.nested else 0)
    return FileChannel(os.open(src.path, flags), own=True, name=src.path)


def decide(sources: list[Source], plan: list[p.PlanEntry], overwrite: bool, algo: int,
           result: SendResult) -> tuple[list[int], int]:
    """Files (and links) to send, and the bytes already done. In a resumed session, a final file already
    identical on the receiver is skipped; a different one is refused unless the receiver allows overwriting
    (checked before any body moves). Links travel in the manifest: the receiver makes them itself."""
    todo = []
    done = 0
    palgo = checksum.prefix_algorithm(algo)
    for i, (src, pe) in enumerate(zip(sources, plan, strict=True)):
        if not src.entry.is_file:
            continue
        if pe.state == p.P_EXISTS:
            same = False
            if pe.have == src.entry.size:
                with open_source(src) as ch:
                    same = hashing.digest_read(palgo, ch, src.entry.size) == pe.digest
            if same:
                result.skipped += 1
                done += src.entry.size
                continue
            if not overwrite:
                raise TransferError(f"{src.entry.name.decode('utf-8', 'replace')} exists on the receiver and "
                                    "differs (the receiver needs --overwrite)", E_EXISTS)
        todo.append(i)
    return todo, done


__all__ = ["decide", "open_source", "read_plan", "send_manifest"]
