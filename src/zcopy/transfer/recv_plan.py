"""The receiver's plan phase: for each manifest entry, what is already there (nothing, a verified partial to
resume, an existing final file), every conflict refused before anything is written; then the directories are
made, the PLAN streams back authenticated, and symlink entries are made under their partial names."""

from __future__ import annotations

import contextlib
import os
import stat
import time

from zcopy.transfer import checksum, hashing, names, partials
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import E_EXISTS, TransferError, UnsafeNameError
from zcopy.transfer.handshake import Agreed
from zcopy.transfer.recv_manifest import Manifest
from zcopy.transfer.recv_publish import Pending, Publisher
from zcopy.transfer.recv_tree import Tree, lstat, open_file
from zcopy.transfer.results import SessionResult
from zcopy.transfer.stream import Stream


def make(st: Stream, agreed: Agreed, m: Manifest, tree: Tree, pub: Publisher, result: SessionResult, *,
         overwrite: bool) -> list[p.PlanEntry]:
    """Check every entry against the target, create the directories, send PLAN ... PLAN_END, make the links."""
    palgo = checksum.prefix_algorithm(agreed.algo)
    resume = agreed.resume
    conflicts: list[str] = []
    plan: list[p.PlanEntry] = []
    links: list[int] = []
    for i, e in enumerate(m.entries):
        pub.trim_dirs()
        parts = m.parts[i]
        shown = e.name.decode("utf-8", "backslashreplace")
        parent = tree.dir(parts[:-1], create=False)
        st_ = lstat(parts[-1], parent)
        if e.is_link:
            if st_ is None:
                links.append(i)
            elif stat.S_ISLNK(st_.st_mode) and parent is not None and \
                    os.readlink(parts[-1], dir_fd=parent) == e.target:
                result.skipped += 1  # the same link is already there
            elif stat.S_ISDIR(st_.st_mode) or not overwrite:
                conflicts.append(shown)
            else:
                links.append(i)
            plan.append(p.PlanEntry(p.P_NEW))
            continue
        if st_ is not None and stat.S_ISLNK(st_.st_mode):
            raise UnsafeNameError(f"{shown} is a symlink in the target directory; refusing to replace it")
        if e.is_dir:
            if st_ is not None and not stat.S_ISDIR(st_.st_mode):
                raise TransferError(f"{shown} exists and is not a directory", E_EXISTS)
            plan.append(p.PlanEntry(p.P_NEW))
            continue
        if st_ is not None:
            if not stat.S_ISREG(st_.st_mode):
                raise TransferError(f"{shown} exists and is not a regular file", E_EXISTS)
            if resume:
                assert parent is not None
                with open_file(parts[-1], parent, os.O_RDONLY) as ch:
                    digest = hashing.digest_read(palgo, ch, st_.st_size) or b""
                plan.append(p.PlanEntry(p.P_EXISTS, st_.st_size, digest))
                continue
            if not overwrite:
                conflicts.append(shown)
        pst = lstat(names.partial_name(parts[-1]), parent) if e.size > p.SMALL_FILE_MAX else None
        if pst is not None and not resume:
            # Not resuming: what an earlier session kept of this file is worthless, and may be what filled the
            # disk. Give the space back now, before any body arrives (unless a running session holds it).
            assert parent is not None
            partials.drop(names.partial_name(parts[-1]), parent)
            pst = None
        if pst is not None and stat.S_ISREG(pst.st_mode) and pst.st_size > 0:
            assert parent is not None
            with open_file(names.partial_name(parts[-1]), parent, os.O_RDONLY) as ch:
                t = time.perf_counter()
                digest = hashing.digest_mapped(palgo, ch, pst.st_size)
                result.checksum_seconds += time.perf_counter() - t
            plan.append(p.PlanEntry(p.P_PARTIAL, pst.st_size, digest))
        else:
            # Small files are always resent whole in a BATCH (a leftover partial is simply rewritten).
            plan.append(p.PlanEntry(p.P_NEW))
    if conflicts:
        more = f" and {len(conflicts) - 1} more already exist" if len(conflicts) > 1 else " already exists"
        raise TransferError(f"{conflicts[0]}{more} (the receiver needs --overwrite, "
                            "or resend with --resume to skip identical files)", E_EXISTS)
    # Every check passed: now create the directories (empty ones included).
    for i, e in enumerate(m.entries):
        if e.is_dir:
            pub.trim_dirs()
            tree.dir(m.parts[i], create=True)
            result.dirs += 1
    pt = agreed.plan
    for i in range(0, len(plan), p.CHUNK_ENTRIES):
        frame = p.Plan(tuple(plan[i : i + p.CHUNK_ENTRIES])).encode()
        pt.add(frame[p.HEADER_SIZE :])
        st.send(frame)
    st.send(p.PlanEnd(overwrite, len(plan), p.plan_mac(agreed.key, pt.digest(), overwrite, len(plan))).encode())
    for i in links:
        _link(m, i, tree, pub)
    return plan


def _link(m: Manifest, index: int, tree: Tree, pub: Publisher) -> None:
    """A symlink entry: made under its partial name with the sender's mtime, published with the next batch."""
    e = m.entries[index]
    assert e.target is not None
    parts = m.parts[index]
    parent = tree.dir(parts[:-1], create=True)
    assert parent is not None
    partial = names.partial_name(parts[-1])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial, dir_fd=parent)
    os.symlink(e.target, partial, dir_fd=parent)
    os.utime(partial, ns=(e.mtime_ns, e.mtime_ns), dir_fd=parent, follow_symlinks=False)
    pub.queue(Pending(-1, parent, partial, parts[-1], e, None), 0)


__all__ = ["make"]
