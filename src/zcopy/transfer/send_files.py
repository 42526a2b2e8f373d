"""The sender's files phase: small files many per BATCH frame, large ones as FILE + body + TRAILER (sendfile in
plain mode, pread + hash + TLS write otherwise), ACKs taken as they arrive behind the bodies, BYE at the end.

A source that shrinks, grows or changes while it is sent is reported and its TRAILER (or BATCH item) says so,
so the receiver does not publish it; the rest of the session carries on.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import time
from collections.abc import Callable

from zcopy import FileChannel, TruncatedFileError
from zcopy.transfer import checksum, hashing
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import ProtocolError
from zcopy.transfer.results import SendResult
from zcopy.transfer.send_plan import open_source
from zcopy.transfer.sources import Source
from zcopy.transfer.stream import PeerError, Stream

# With a progress callback, bodies move in 16 MiB transfer_to calls so the bar moves; without one, each file
# is a single call (the route loops inside). 16 MiB is ~10 ms at loopback speed: smooth, and the extra fstat
# per call is noise.
PROGRESS_CHUNK = 16 << 20
# Zero padding for a source that shrank mid-body: the stream must still carry the announced length.
_ZEROS = bytes(1 << 16)

Progress = Callable[[int, int], None]


class Files:
    """Moves the bodies of one session and tracks what the receiver has acknowledged."""

    def __init__(self, st: Stream, sources: list[Source], result: SendResult, *, key: bytes, algo: int,
                 plain: bool, route: str | None, progress: Progress | None, done_bytes: int = 0) -> None:
        self.st = st
        self.sources = sources
        self.result = result
        self.key = key
        self.algo = algo
        self.plain = plain
        self.route = route
        self.progress = progress
        self.pending: set[int] = set()
        self.bye: p.Bye | None = None
        self.buf = bytearray(hashing.BUFFER_SIZE)
        self.done_bytes = done_bytes
        self.sent_files = 0  # TRAILERs and BATCH items sent: DONE carries the count
        self.batch: list[p.BatchItem] = []
        self.batch_bytes = 0

    def send(self, todo: list[int], plan: list[p.PlanEntry]) -> None:
        """Every file in `todo`, small ones batched, with the ACKs that have arrived taken along the way."""
        for i in todo:
            src = self.sources[i]
            if src.entry.size <= p.SMALL_FILE_MAX:
                if self.add_small(i):
                    self.poll_acks()  # after each ~1 MiB frame, not after each small file
            else:
                self.flush_batch()
                self.send_file(i, plan[i])
                self.poll_acks()
        self.flush_batch()

    def poll_acks(self) -> None:
        """Take whatever ACKs have arrived without waiting: ACKs are pipelined behind the bodies."""
        if isinstance(self.st.sock, ssl.SSLSocket):
            # Readable bytes may be a TLS record that holds no application data (a session ticket): a blocking
            # recv() would then wait for the next ACK, which the receiver only sends after more files. Read
            # without blocking instead, until TLS wants more bytes.
            timeout = self.st.sock.gettimeout()
            self.st.sock.setblocking(False)
            try:
                while True:
                    try:
                        data = self.st.sock.recv(1 << 16)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        break
                    if not data:
                        break  # EOF: reported by the blocking read at the end
                    self.st.dec.feed(data)
            finally:
                self.st.sock.settimeout(timeout)
        else:
            # poll() first: a Python socket with a timeout waits inside recv() even with MSG_DONTWAIT.
            poller = select.poll()
            poller.register(self.st.sock, select.POLLIN)
            while poller.poll(0):
                data = self.st.sock.recv(1 << 16)
                if not data:
                    break  # EOF: reported by the blocking read at the end
                self.st.dec.feed(data)
        while True:
            ev = self.st.dec.next_event()
            if ev is p.NEED_DATA:
                return
            self.on_event(ev)

    def on_event(self, ev: p.Event) -> None:
        if isinstance(ev, p.Ack):
            p.verify(self.key, b"ack", ev.signed, ev.mac, "an ACK from the receiver")
            for it in ev.items:
                if it.index not in self.pending:
                    raise ProtocolError(f"ACK for entry {it.index}, which is not awaiting one")
                self.pending.discard(it.index)
                if it.status == p.S_OK:
                    self.result.files += 1
                else:
                    name = self.sources[it.index].path
                    self.result.failed.append({"path": name, "code": it.code, "error": it.message})
        elif isinstance(ev, p.Bye):
            p.verify(self.key, b"bye", ev.signed, ev.mac, "the receiver's BYE")
            self.bye = ev
        elif isinstance(ev, p.Error):
            raise PeerError("receiver", ev)
        else:
            raise ProtocolError(f"unexpected {type(ev).__name__} from the receiver")

    def _count(self, route: str, n: int) -> None:
        self.result.routes[route] = self.result.routes.get(route, 0) + n
        self.result.bytes_sent += n
        self.done_bytes += n

    # -- small files: many per BATCH frame ------------------------------------------------------------------
    def add_small(self, index: int) -> bool:
        """Queue one small file in the current BATCH; True if that filled and sent the frame."""
        src = self.sources[index]
        size = src.entry.size
        flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NOFOLLOW if src.nested else 0)
        fd = os.open(src.path, flags)
        try:
            data = os.read(fd, size + 1) if size else b""  # one byte more: a file that grew is caught here
            st = os.fstat(fd)
        finally:
            os.close(fd)
        # The walk's size and mtime vs. the file after the read: any change since the manifest is caught.
        changed = len(data) != size or st.st_size != size or st.st_mtime_ns != src.entry.mtime_ns
        self.pending.add(index)
        self.sent_files += 1
        if changed:
            self.result.warnings.append(f"{src.path} changed while being sent (size or mtime); not published")
            item = p.BatchItem(index, p.S_SOURCE_CHANGED, b"", b"")
        else:
            t = time.perf_counter()
            digest = checksum.digest_of(self.algo, data)
            self.result.checksum_seconds += time.perf_counter() - t
            item = p.BatchItem(index, p.S_OK, digest, data)
            self._count("readwrite", size)
            self.result.batched_files += 1
        self.batch.append(item)
        self.batch_bytes += len(item.body) + 48
        if self.batch_bytes >= p.BATCH_TARGET or len(self.batch) >= p.MAX_BATCH_ITEMS:
            self.flush_batch()
            return True
        return False

    def flush_batch(self) -> None:
        if not self.batch:
            return
        self.st.sock.sendall(p.Batch.build(self.key, self.batch))
        self.batch = []
        self.batch_bytes = 0
        if self.progress is not None:
            self.progress(self.done_bytes, self.result.bytes_total)

    # -- large files: FILE + body + TRAILER ------------------------------------------------------------------
    def send_file(self, index: int, pe: p.PlanEntry) -> None:
        src = self.sources[index]
        size = src.entry.size
        res = self.result
        with open_source(src) as ch:
            st = os.fstat(ch.fileno())
            changed = st.st_size != size or st.st_mtime_ns != src.entry.mtime_ns
            hasher = checksum.new_hasher(self.algo)
            hashed = 0  # bytes [0, hashed) already fed to hasher
            start = 0
            if not changed and pe.state == p.P_PARTIAL and 0 < pe.have <= size:
                palgo = checksum.prefix_algorithm(self.algo)
                t = time.perf_counter()
                ph = checksum.new_hasher(palgo)
                got = hashing.update_read(ph, ch, 0, pe.have, self.buf)
                res.checksum_seconds += time.perf_counter() - t
                if got == pe.have and ph.digest() == pe.digest:
                    start = pe.have
                    res.bytes_resumed += start
                    if palgo == self.algo:
                        hasher, hashed = ph, start
            length = size - start
            if changed:
                length = 0
            header = p.FileStart(index, start, length).encode()
            if self.plain:
                # MSG_MORE: the header waits for the body's first bytes instead of leaving as a tiny segment.
                self.st.sock.sendall(header, socket.MSG_MORE if length else 0)
            else:
                self.st.sock.sendall(header)  # SSLSocket.sendall takes no flags
            self.pending.add(index)
            self.sent_files += 1
            self.done_bytes += start
            if self.plain:
                moved = self._body(ch, start, length)
            else:
                if hashed != start:  # the prefix was checked with another algorithm: hash it for the digest
                    hashing.update_read(hasher, ch, hashed, start, self.buf)
                moved = self._body_copy(ch, start, length, hasher)
                hashed = start + moved
            if moved < length:
                changed = True
                self._pad(length - moved)
            digest = b""
            if not changed and self.algo != checksum.NONE:
                t = time.perf_counter()
                got = hashing.update_read(hasher, ch, hashed, size, self.buf)
                res.checksum_seconds += time.perf_counter() - t
                changed = got != size - hashed
                digest = hasher.digest()
            if not changed:
                st = os.fstat(ch.fileno())
                changed = st.st_size != size or st.st_mtime_ns != src.entry.mtime_ns
        if changed:
            res.warnings.append(f"{src.path} changed while being sent (size or mtime); not published")
            self.st.sock.sendall(p.Trailer(index, p.S_SOURCE_CHANGED, b"").sealed(self.key).encode())
        else:
            self.st.sock.sendall(p.Trailer(index, p.S_OK, digest).sealed(self.key).encode())

    def _body(self, ch: FileChannel, start: int, length: int) -> int:
        """Move [start, start+length) to the socket; returns bytes moved (less if the source shrank)."""
        moved = 0
        step = PROGRESS_CHUNK if self.progress is not None else length
        while moved < length:
            want = min(step, length - moved)
            try:
                n = ch.transfer_to(start + moved, want, self.st.sock, route=self.route)
            except TruncatedFileError as exc:
                n = exc.bytes_moved
                want = n + 1  # mark as short
            self._count(ch.last_route or "unknown", n)
            moved += n
            if self.progress is not None:
                self.progress(self.done_bytes, self.result.bytes_total)
            if n < want:
                break  # the source ended early: it shrank
        return moved

    def _body_copy(self, ch: FileChannel, start: int, length: int, hasher: checksum.Hasher) -> int:
        """TLS: pread into the reused buffer, hash it there while hot, write it to the TLS socket (which
        encrypts it: a copy through user space the route name says). Returns bytes moved."""
        view = memoryview(self.buf)
        moved = 0
        since = 0
        while moved < length:
            n = ch.readinto(view[: min(len(view), length - moved)], start + moved)
            if n == 0:
                break  # the source shrank
            hasher.update(view[:n])
            self.st.sock.sendall(view[:n])
            self._count("readwrite", n)
            moved += n
            since += n
            if self.progress is not None and since >= PROGRESS_CHUNK:
                since = 0
                self.progress(self.done_bytes, self.result.bytes_total)
        if self.progress is not None:
            self.progress(self.done_bytes, self.result.bytes_total)
        return moved

    def _pad(self, n: int) -> None:
        while n:
            k = min(n, len(_ZEROS))
            self.st.sock.sendall(_ZEROS[:k])
            n -= k


__all__ = ["PROGRESS_CHUNK", "Files", "Progress"]
