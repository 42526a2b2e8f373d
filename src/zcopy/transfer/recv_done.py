"""The receiver's done phase: after the sender's authenticated DONE, the last publish batch, partials left beside
files skipped as identical, directory modes and mtimes (deepest first) made durable, and BYE with the summary."""

from __future__ import annotations

import contextlib
import os

from zcopy.transfer import durable, names
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import ProtocolError
from zcopy.transfer.recv_files import MODE_MASK, Files
from zcopy.transfer.recv_manifest import Manifest
from zcopy.transfer.recv_publish import Publisher
from zcopy.transfer.recv_tree import Tree
from zcopy.transfer.results import SessionResult
from zcopy.transfer.stream import Stream


def finish(st: Stream, done: p.Done, key: bytes, m: Manifest, files: Files, tree: Tree, pub: Publisher,
           result: SessionResult) -> None:
    p.verify(key, b"done", done.signed(), done.mac, "the sender's DONE")
    if done.count != files.trailers:
        raise ProtocolError(f"DONE says {done.count} files were sent; {files.trailers} arrived")
    pub.flush()
    for i, e in enumerate(m.entries):
        if not e.is_file or i in files.received:
            continue
        # Skipped as already identical. A partial may linger if we were killed between publishing it
        # (link) and removing its old name (unlink): its bytes are the final file's, so drop it.
        result.skipped += 1
        parts = m.parts[i]
        parent = tree.dir(parts[:-1], create=False)
        if parent is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(names.partial_name(parts[-1]), dir_fd=parent)
    # Directory modes and mtimes last (after every unlink above), deepest first: adding files changed them.
    # Then one syncfs per file system for all of them (an fd per device kept aside), or an fsync each.
    root = tree.root
    devices = {os.fstat(root).st_dev: os.dup(root)}
    try:
        for i in range(len(m.entries) - 1, -1, -1):
            e = m.entries[i]
            if e.is_dir:
                pub.trim_dirs()
                fd = tree.dir(m.parts[i], create=True)
                assert fd is not None
                os.fchmod(fd, e.mode & MODE_MASK)
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
                if not durable.HAS_SYNCFS:
                    os.fsync(fd)
                elif (dev := os.fstat(fd).st_dev) not in devices:
                    devices[dev] = os.dup(fd)
        if durable.HAS_SYNCFS:
            for fd in devices.values():
                durable.syncfs(fd)
        else:
            os.fsync(root)
    finally:
        for fd in devices.values():
            os.close(fd)
    res = result
    st.send(p.Bye.build(key, {
        "files": res.files, "bytes": res.bytes, "routes": res.routes, "user_bytes": res.user_bytes,
        "checksum": res.checksum, "checksum_seconds": round(res.checksum_seconds, 6),
        "failed": len(res.failed), "encryption": res.encryption, "batched_files": res.batched_files,
        "syncs": res.syncs, "links": res.links}))


__all__ = ["finish"]
