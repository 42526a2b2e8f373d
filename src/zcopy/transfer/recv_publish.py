"""The receiver's batched durability: verified partials queue up; a batch is made durable with one syncfs, each
partial renamed to its final name (never over a file that appeared meanwhile, unless --overwrite), each touched
directory fsynced once, and one ACK frame reports the lot."""

from __future__ import annotations

import os
from dataclasses import dataclass

from zcopy import FileChannel
from zcopy.transfer import durable
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import E_EXISTS, TransferError
from zcopy.transfer.recv_tree import Tree
from zcopy.transfer.results import SessionResult
from zcopy.transfer.stream import Stream

# A publish batch: one syncfs per this many files or bytes. Each queued partial stays open (holding its OFD lock)
# until renamed, so the receiver raises its soft descriptor limit toward the hard one to fit 2048 of them, and uses
# fewer where it cannot (half the soft limit, at least 64). Each syncfs pays a fixed cost (a journal commit, a
# device cache flush) once for its whole batch, so larger batches pay it fewer times (the tree part of
# `python bench/transfer.py` measures the whole). 256 MiB bounds what a kill can cost a resume to re-verify.
PUBLISH_FILES = 2048
PUBLISH_BYTES = 256 << 20


def shown(e: p.Entry) -> str:
    return e.name.decode("utf-8", "backslashreplace")


@dataclass
class Pending:
    """A verified partial (or a new symlink) waiting for the batch's syncfs, then its rename."""

    index: int  # manifest index; -1 for a symlink (the sender awaits no ACK for it)
    parent: int
    partial: bytes
    final: bytes
    entry: p.Entry
    ch: FileChannel | None  # a large file's channel, open (holding its OFD lock) until renamed
    fd: int = -1  # a small file's descriptor, likewise

    def close(self) -> None:
        if self.ch is not None:
            self.ch.close()
        elif self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Publisher:
    """The publish queue of one session and the ACKs it owes the sender."""

    def __init__(self, st: Stream, tree: Tree, result: SessionResult, *, overwrite: bool, batch_files: int) -> None:
        self.st = st
        self.tree = tree
        self.result = result
        self.overwrite = overwrite
        self.batch_files = batch_files
        self.key = b""
        self.items: list[Pending] = []
        self.nbytes = 0
        self.acks: list[p.AckItem] = []

    def close(self) -> None:
        """A failed session: the partials stay for --resume, their locks go."""
        for item in self.items:
            item.close()
        self.items = []

    def trim_dirs(self) -> None:
        if not self.items:  # queued partials refer to their parents' fds
            self.tree.trim()

    def queue(self, item: Pending, nbytes: int) -> None:
        self.items.append(item)
        self.nbytes += nbytes
        if (len(self.items) >= self.batch_files or self.nbytes >= PUBLISH_BYTES
                or len(self.items) + len(self.tree) >= self.tree.fd_budget):
            self.flush()

    def failed(self, index: int, entry: p.Entry, code: int, message: str) -> None:
        self.result.failed.append({"name": shown(entry), "code": code, "error": message})
        self.acks.append(p.AckItem(index, p.S_FAILED, code, message))

    def _sync(self, fds: dict[int, int]) -> None:
        """Make everything written so far durable: one syncfs per file system touched (`fds`: st_dev → a
        directory fd on it), or, without syncfs, an fdatasync per queued file."""
        if durable.HAS_SYNCFS:
            for fd in fds.values():
                durable.syncfs(fd)
        else:
            for item in self.items:
                if item.ch is not None or item.fd >= 0:
                    os.fdatasync(item.ch.fileno() if item.ch is not None else item.fd)
        self.result.syncs += 1

    @staticmethod
    def _devices(parents: list[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for fd in parents:
            out.setdefault(os.fstat(fd).st_dev, fd)
        return out

    def flush(self) -> None:
        """Publish the queue: sync once, rename each partial, fsync each touched directory once, ACK the lot."""
        if self.items:
            parents = list(dict.fromkeys(item.parent for item in self.items))
            self._sync(self._devices(parents))
            try:
                while self.items:
                    item = self.items[0]
                    self._publish(item)
                    item.close()
                    self.items.pop(0)
                    if item.index >= 0:
                        self.acks.append(p.AckItem(item.index, p.S_OK))
                        self.result.files += 1
                    else:
                        self.result.links += 1
            finally:
                for fd in parents:
                    os.fsync(fd)
            self.nbytes = 0
        while self.acks:
            self.st.send(p.Ack.build(self.key, self.acks[: p.MAX_ACK_ITEMS]))
            del self.acks[: p.MAX_ACK_ITEMS]
        self.trim_dirs()

    def _publish(self, item: Pending) -> None:
        partial, final, parent = item.partial, item.final, item.parent
        if self.overwrite:
            os.rename(partial, final, src_dir_fd=parent, dst_dir_fd=parent)
            return
        # Never replace a file that appeared since the plan was made: rename with RENAME_NOREPLACE, or link +
        # unlink where the file system lacks it (link fails with EEXIST; rename would silently clobber).
        try:
            if durable.rename_noreplace(partial, final, parent):
                return
            os.link(partial, final, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise TransferError(f"{shown(item.entry)} appeared on the receiver during the session; not overwritten",
                                E_EXISTS) from None
        os.unlink(partial, dir_fd=parent)


__all__ = ["PUBLISH_BYTES", "PUBLISH_FILES", "Pending", "Publisher", "shown"]
