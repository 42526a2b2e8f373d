"""The receiver's files phase: BATCH frames of small files (one pwrite each) and large files (FILE + body +
TRAILER) landed into locked partials, verified against the sender's authenticated digests, and queued for
publishing.

How a large body lands (`Files._way`): `direct` (O_DIRECT from the buffer it arrived or was decrypted in, hashed
there), `splice` (plain mode with --cache or without direct I/O: socket → pipe → file, hashed over a mapping
afterwards) or a copy through user space (TLS with --cache), each named in the session's routes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time

from zcopy import FileChannel, _sys, routes
from zcopy.transfer import checksum, hashing, names
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import (
    E_CHECKSUM,
    E_EXISTS,
    E_SOURCE_CHANGED,
    NO_SPACE_ERRNOS,
    ConnectionDropped,
    ProtocolError,
    TransferError,
    from_os_error,
)
from zcopy.transfer.handshake import Agreed
from zcopy.transfer.recv_manifest import Manifest
from zcopy.transfer.recv_publish import Pending, Publisher, shown
from zcopy.transfer.recv_tree import Tree, open_file
from zcopy.transfer.results import SessionResult
from zcopy.transfer.stream import Stream

# A zero-copy body lands in calls of at most this many bytes: a splice loop returns to Python every 8 MiB (a few
# microseconds against milliseconds of moving), the direct route's overlapped pipeline every 256 MiB.
_SPLICE_STEP = 8 << 20
_DIRECT_STEP = 256 << 20

# TLS bodies: decrypted into one buffer while the helper thread has the disk DMA the previous one. Decryption is CPU
# work the socket buffer cannot do ahead, unlike a plain receive (where the overlap lost: routes.direct.STREAM_OVERLAP).
# Not in a repo bench yet: a hand-run check was too noisy to quote.
TLS_OVERLAP = True

# setuid/setgid bits are never recreated from a network peer's word.
MODE_MASK = 0o7777 & ~(0o4000 | 0o2000)

# struct flock on 64-bit Linux (as zcopy.channel packs it): an exclusive lock on the whole file.
_WRLOCK = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
_SETLK = _sys.F_OFD_SETLK if _sys.F_OFD_SETLK is not None else fcntl.F_SETLK


def _create_locked(partial: bytes, parent: int, shown: str) -> int:
    """A small file's partial, empty, 0600 and under an OFD lock: created with O_EXCL (the common case, no
    truncate needed), or, if a leftover exists, opened, locked, then truncated."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fresh = True
    try:
        fd = os.open(partial, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=parent)
    except FileExistsError:
        fd = os.open(partial, flags, dir_fd=parent)
        fresh = False
    try:
        fcntl.fcntl(fd, _SETLK, _WRLOCK)
        if not fresh:
            os.ftruncate(fd, 0)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise TransferError(f"{shown} is being received by another session", E_EXISTS) from None
        raise
    return fd


class Files:
    """Receives the bodies of one session. `received` and `trailers` count what arrived (DONE is checked
    against `trailers`)."""

    def __init__(self, st: Stream, agreed: Agreed, m: Manifest, plan: list[p.PlanEntry], tree: Tree,
                 pub: Publisher, result: SessionResult, *, plain: bool, cache: bool, route: str | None) -> None:
        self.st = st
        self.key = agreed.key
        self.algo = agreed.algo
        self.entries = m.entries
        self.parts = m.parts
        self.plan = plan
        self.tree = tree
        self.pub = pub
        self.result = result
        self.plain = plain
        self.cache = cache
        self.route = route
        self.received: set[int] = set()
        self.trailers = 0  # TRAILERs and BATCH items received: DONE must carry the same count

    def _claim(self, index: int) -> p.Entry:
        if index >= len(self.entries) or not self.entries[index].is_file or index in self.received:
            raise ProtocolError(f"a body for entry {index}, which is not a file awaiting its body")
        self.received.add(index)
        self.trailers += 1
        return self.entries[index]

    # -- small files, many per BATCH frame -----------------------------------------------------------------
    def batch(self, b: p.Batch) -> None:
        p.verify(self.key, b"batch", b.signed, b.mac, "a BATCH frame")
        res = self.result
        algo = self.algo
        dsize = checksum.DIGEST_SIZE[algo]
        digest_of = checksum.digest_of
        for it in b.items:
            index = it.index
            e = self._claim(index)
            if it.status == p.S_SOURCE_CHANGED:
                self.pub.failed(index, e, E_SOURCE_CHANGED, f"{shown(e)} changed on the sender while being sent")
                continue
            size = e.size
            if len(it.body) != size or size > p.SMALL_FILE_MAX or len(it.digest) != dsize:
                raise ProtocolError(f"BATCH item for entry {index} does not match the manifest")
            t = time.perf_counter()
            good = digest_of(algo, it.body) == it.digest
            res.checksum_seconds += time.perf_counter() - t
            res.bytes += size
            res.user_bytes += 2 * size  # recv_into the frame, pwrite the file: two crossings, as readwrite
            res.routes["readwrite"] = res.routes.get("readwrite", 0) + size
            if not good:
                self.pub.failed(index, e, E_CHECKSUM, f"{shown(e)}: checksum mismatch, not published")
                continue
            parts = self.parts[index]
            parent = self.tree.fds.get(parts[:-1]) or self.tree.dir(parts[:-1], create=True)
            assert parent is not None
            partial = names.partial_name(parts[-1])
            fd = _create_locked(partial, parent, shown(e))
            try:
                if size:
                    done = os.pwrite(fd, it.body, 0)
                    while done < size:
                        done += os.pwrite(fd, it.body[done:], done)
                os.fchmod(fd, e.mode & MODE_MASK)
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
            except OSError as exc:
                os.close(fd)
                if exc.errno in NO_SPACE_ERRNOS:
                    raise from_os_error(exc, shown(e), "; nothing unverified was published") from None
                raise
            res.batched_files += 1
            self.pub.queue(Pending(index, parent, partial, parts[-1], e, None, fd), size)

    def _lock_partial(self, partial: bytes, parent: int, shown: str) -> FileChannel:
        ch = open_file(partial, parent, os.O_RDWR | os.O_CREAT)
        # Two receivers on one DIR must not interleave writes into the same partial: an OFD lock, held
        # until this file is renamed (and released by the kernel if we are killed).
        if ch.try_lock() is None:
            ch.close()
            raise TransferError(f"{shown} is being received by another session", E_EXISTS)
        return ch

    # -- one large file: FILE + body + TRAILER -------------------------------------------------------------
    def file(self, fs: p.FileStart) -> None:
        e = self._claim(fs.index)
        pe = self.plan[fs.index]
        allowed = {0, pe.have} if pe.state == p.P_PARTIAL else {0}
        if fs.offset not in allowed or fs.offset + fs.length > e.size:
            raise ProtocolError(f"FILE frame for entry {fs.index} does not match the manifest and plan")
        parts = self.parts[fs.index]
        name = shown(e)
        parent = self.tree.dir(parts[:-1], create=True)
        assert parent is not None
        partial = names.partial_name(parts[-1])
        res = self.result
        ch = self._lock_partial(partial, parent, name)
        queued = False
        try:
            ch.truncate(fs.offset)
            way = self._way(ch)
            hasher: checksum.Hasher | None = None
            if way != "splice":
                # The bytes pass through a user buffer: hash them there, while hot; the prefix kept from an
                # earlier session is hashed first, from the file.
                hasher = checksum.new_hasher(self.algo)
                if fs.offset:
                    hashing.update_read(hasher, ch, 0, fs.offset)
            pos = self._body(ch, fs.offset, e.size, name, hasher, way)
            trailer = self.st.next()
            if not isinstance(trailer, p.Trailer) or trailer.index != fs.index:
                raise ProtocolError(f"expected the TRAILER of entry {fs.index}")
            p.verify(self.key, b"trailer", trailer.signed(), trailer.mac, f"the TRAILER of {name}")
            if pos != e.size or trailer.status == p.S_SOURCE_CHANGED:
                # The body was padded to its announced length; these bytes are not the file.
                os.unlink(partial, dir_fd=parent)
                self.pub.failed(fs.index, e, E_SOURCE_CHANGED, f"{name} changed on the sender while being sent")
                return
            if len(trailer.digest) != checksum.DIGEST_SIZE[self.algo]:
                raise ProtocolError(f"TRAILER digest of {len(trailer.digest)} bytes for {self.result.checksum}")
            os.fchmod(ch.fileno(), e.mode & MODE_MASK)
            os.utime(ch.fileno(), ns=(e.mtime_ns, e.mtime_ns))
            t = time.perf_counter()
            digest = hasher.digest() if hasher is not None else hashing.digest_mapped(self.algo, ch, e.size)
            res.checksum_seconds += time.perf_counter() - t
            if digest != trailer.digest:
                os.unlink(partial, dir_fd=parent)
                self.pub.failed(fs.index, e, E_CHECKSUM, f"{name}: checksum mismatch, not published")
                return
            self.pub.queue(Pending(fs.index, parent, partial, parts[-1], e, ch), e.size)
            queued = True
        finally:
            if not queued:
                # A partial with nothing in it (the session ended before this body's first byte) is no use to
                # --resume: it goes, under our lock, so no empty hidden files are left behind.
                with contextlib.suppress(OSError):
                    if os.fstat(ch.fileno()).st_size == 0:
                        os.unlink(partial, dir_fd=parent)
                ch.close()

    def _way(self, ch: FileChannel) -> str:
        """How a large body lands: "direct" (O_DIRECT from the received buffer, hashed there; the default where
        the file system does direct I/O), "splice" (plain --cache, or a forced --route: no copy into user space,
        one CPU copy into the page cache, hashed over a mapping afterwards), or "copy" (TLS --cache, or no direct
        I/O here: recv_into + pwrite through the page cache, hashed in the buffer)."""
        if self.route is not None:
            return "splice" if self.plain else "copy"
        if not self.cache and routes.direct_refusal(ch.fileno()) is None:
            return "direct"
        return "splice" if self.plain else "copy"

    def _body(self, ch: FileChannel, pos: int, size: int, shown: str, hasher: checksum.Hasher | None,
              way: str) -> int:
        """Land the FILE body at `pos`; returns the end position."""
        res = self.result
        while self.st.dec.buffered and self.st.dec.body_remaining:  # never happens with exact reads; kept correct
            ev = self.st.dec.next_event()
            assert isinstance(ev, p.BodyData)
            if hasher is not None:
                hasher.update(ev.data)
            pos += ch.write(ev.data, pos)
            res.user_bytes += len(ev.data)
        try:
            if way == "direct" and not self.plain:
                return self._tls_direct(ch, pos, size, shown, hasher)
            while self.st.dec.body_remaining:
                n = self._step(ch, pos, way, hasher)
                self.st.dec.skip_body(n)
                pos += n
                if n == 0:
                    raise ConnectionDropped(f"the sender went away during {shown}: {pos} of {size} bytes "
                                            "kept for --resume")
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                n = getattr(exc, "bytes_moved", 0)
                raise from_os_error(exc, shown, f": {pos + n} of {size} bytes kept for --resume") from None
            raise
        return pos

    def _step(self, ch: FileChannel, pos: int, way: str, hasher: checksum.Hasher | None) -> int:
        res = self.result
        if way != "copy":  # plain: splice, or the direct route with the hash computed in its buffer
            hook = hasher.update if hasher is not None else None
            ch.direct = way == "direct"  # a direct channel asks routes.move for the direct route first
            try:
                # In steps that end on a multiple of a step size, so the session's byte count (a progress bar reads
                # it) moves during a large body too; the direct route's blocks stay aligned, its pipeline long.
                step = _DIRECT_STEP if way == "direct" else _SPLICE_STEP
                count = min(self.st.dec.body_remaining, step - pos % step)
                n = ch.transfer_from(self.st.sock, pos, count, route=self.route, on_chunk=hook)
            except OSError as exc:
                self._count(ch, getattr(exc, "bytes_moved", 0))
                raise
            self._count(ch, n)
            return n
        assert hasher is not None
        view = memoryview(self.st.buf)
        n = self.st.sock.recv_into(view, min(len(view), self.st.dec.body_remaining))
        if n:
            hasher.update(view[:n])
            done = 0
            while done < n:
                done += ch.write(view[done:n], pos + done)
            res.routes["readwrite"] = res.routes.get("readwrite", 0) + n
            res.bytes += n
            res.user_bytes += 2 * n  # decrypted into the buffer, written from it
        return n

    def _tls_direct(self, ch: FileChannel, pos: int, size: int, shown: str, hasher: checksum.Hasher | None) -> int:
        """TLS into an aligned buffer of a routes.DirectWriter (decrypted there: the one CPU copy), hashed there, and
        DMA'd to the disk by the writer's helper thread while the next buffer is received: the page cache never
        holds the file. Unaligned heads and the short tail go through the page cache; if the file system refuses
        the first O_DIRECT write after all, the rest goes through it too, and the route says readwrite."""
        assert hasher is not None
        res = self.result
        w = routes.DirectWriter(ch.fileno(), salvage=True, overlap=TLS_OVERLAP)
        try:
            with w:
                while self.st.dec.body_remaining:
                    view = w.buffer(pos, self.st.dec.body_remaining)
                    got = 0
                    while got < len(view):
                        n = self.st.sock.recv_into(view[got:], len(view) - got)
                        if n == 0:
                            break
                        got += n
                    hasher.update(view[:got])
                    w.submit(view[:got], pos)
                    if got:
                        route = "readwrite" if w.refused else "direct"
                        res.routes[route] = res.routes.get(route, 0) + got
                        res.bytes += got
                        res.user_bytes += 2 * got  # in (decrypted) and out (by DMA or write) of user space
                        self.st.dec.skip_body(got)
                        pos += got
                    if got < len(view):
                        raise ConnectionDropped(f"the sender went away during {shown}: {pos} of {size} bytes "
                                                "kept for --resume")
        except OSError as exc:
            exc.bytes_moved = w.landed()  # type: ignore[attr-defined]  # on the disk, from `start`: the helper has stopped
            raise
        return pos

    def _count(self, ch: FileChannel, n: int) -> None:
        if n:
            route = ch.last_route or "unknown"
            self.result.routes[route] = self.result.routes.get(route, 0) + n
            self.result.bytes += n
            if route in routes.COPY_MODELS:  # bytes a copying fallback (or a forced readwrite) carried by hand
                self.result.user_bytes += n * routes.copy_model(route, "socket", "file").user_crossings


__all__ = ["MODE_MASK", "Files"]
