"""The receiver's manifest phase: MANIFEST chunks until MANIFEST_END, every name checked as it arrives
(names.TreeCheck), the whole authenticated by its MAC before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field

from zcopy.transfer import names
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import E_UNSUPPORTED, ProtocolError, TransferError, UnsafeNameError
from zcopy.transfer.handshake import Agreed
from zcopy.transfer.stream import Stream

# Manifest entries one session may announce: beyond this a hostile or broken sender is only eating memory.
MAX_ENTRIES = 10_000_000


@dataclass
class Manifest:
    entries: list[p.Entry] = field(default_factory=list)
    parts: list[tuple[bytes, ...]] = field(default_factory=list)  # each entry's checked name components


def read(st: Stream, agreed: Agreed, *, links: bool) -> Manifest:
    """Read the manifest the sender streams after authentication (agreed.first is its first frame)."""
    m = Manifest()
    tree = names.TreeCheck()
    ev = agreed.first
    while not isinstance(ev, p.ManifestEnd):
        if not isinstance(ev, p.Manifest):
            raise ProtocolError(f"expected MANIFEST from the sender, got {type(ev).__name__}")
        agreed.manifest.add(st.dec.last_payload)
        if len(m.entries) + len(ev.entries) > MAX_ENTRIES:
            raise TransferError(f"the manifest has more than {MAX_ENTRIES} entries", E_UNSUPPORTED)
        for e in ev.entries:
            if e.is_link and not links:
                raise UnsafeNameError(f"{e.name.decode('utf-8', 'backslashreplace')} is a symlink: this "
                                      "receiver refuses symlinks unless started with --links")
            if e.is_link and not agreed.flags & p.H_LINKS:
                raise ProtocolError("a symlink entry in a session that did not ask for --links")
            m.parts.append(tree.add(e.name, e.is_dir))
        m.entries += ev.entries
        ev = st.next()
    if not p.proof_ok(p.manifest_mac(agreed.key, agreed.manifest.digest(), ev.count), ev.mac):
        raise p.IntegrityError("the manifest failed its integrity check: the stream was altered on the way, or "
                               "the sender does not hold the session key")
    if ev.count != len(m.entries):
        raise ProtocolError(f"MANIFEST_END says {ev.count} entries; {len(m.entries)} arrived")
    return m


__all__ = ["MAX_ENTRIES", "Manifest", "read"]
