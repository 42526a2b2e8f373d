"""The tour: the article's data paths run on this machine, each measured with zcopy.observe, cold and warm.

Owns the steps (traditional edit, mmap edit, sendfile + its read+send control, copy_file_range and direct
(O_DIRECT) + their read+write control, splice receive + its recv+write control), the generated sample file,
page-cache eviction for the cold runs, and the JSON document the CLI renders (schema: zcopy.lab.schema.TOUR).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zcopy
from zcopy import FileChannel, MapMode, SocketChannel, observe
from zcopy.errors import RouteUnavailable
from zcopy.lab import flows, render
from zcopy.lab.peer import Peer
from zcopy.lab.schema import COUNTERS, TOUR_VERSION
from zcopy.lab.stats import MiB, merge_counters, summarize
from zcopy.routes import copy_model

DEFAULT_SIZE = 256 * MiB

# The edit flips "old"↔"new" (same length, as in the article), one hit per 64 KiB block: the traditional path
# must still read and write every byte, while mmap dirties only the pages that hold a hit (on ext4 with large
# folios that is still most of the file: the kernel tracks dirtiness per folio; the tour's mmap step shows it).
OLD, NEW = b"old", b"new"
HIT_EVERY = 64 * 1024

# Eviction retries: pages of a file just sent over loopback can stay referenced while the last socket buffers
# are freed; 3 s bounds the wait, 50 ms keeps the retries cheap.
EVICT_DEADLINE_S = 3.0
EVICT_RETRY_S = 0.05

# The traditional path's reused user buffer: 1 MiB, the size zcopy's readwrite route uses (see zcopy._sys).
EDIT_CHUNK = 1 << 20

Run = dict[str, Any]
Step = dict[str, Any]


@dataclass(frozen=True)
class StepText:
    """What a step is, in the article's words (the report and the CLI print these)."""

    job: str
    title: str
    article: str
    note: str | None = None


_NO_COLD_RUN = "no cold run: the source is a socket, not the file"
# The steps' texts by id, in the order Tour.steps() runs them.
STEP_TEXTS = {
    "traditional": StepText(
        "file edit",
        "traditional I/O: open → read → modify old↔new → write → force → close",
        "§三.1 传统IO文件读写 (read/write through a user buffer)",
    ),
    "mmap": StepText(
        "file edit",
        "mmap: map READ_WRITE → modify in place → force → close",
        "§三.2 mmap 零拷贝 (page cache mapped into user space)",
    ),
    "sendfile": StepText(
        "file→socket",
        "sendfile: transfer_to a loopback socket (receiver discards)",
        "§三.3 sendFile 零拷贝 (page cache → socket, no user buffer)",
    ),
    "read_send": StepText(
        "file→socket",
        "control: the same file → socket job by read + send",
        "§三.1's copies applied to sending: the control for sendfile",
    ),
    "copy_file_range": StepText(
        "file→file",
        "beyond the article: copy_file_range, file → file inside the kernel",
        "not in the article (Linux ≥ 4.5 in-kernel copy; reflink on btrfs/XFS)",
    ),
    "direct_copy": StepText(
        "file→file",
        "the article's DMA copies alone: file → file by O_DIRECT via one aligned user buffer, then force",
        "§一 DMA (the disk controller copies, the CPU does not); O_DIRECT skips the page cache",
        "the disk counters show where the bytes went: read from the disk even when cached, written to "
        "the disk during the copy (nothing left for force); the page-cache routes write at force",
    ),
    "readwrite_copy": StepText(
        "file→file",
        "control: the same durable file → file copy by read + write through a 1 MiB user buffer",
        "§三.1's copies applied to a file copy: the control for copy_file_range and direct",
    ),
    "splice_recv": StepText(
        "socket→file",
        "beyond the article: splice receive, transfer_from a socket into a file",
        "not in the article (Java's transferFrom from a socket is an 8 KiB copy loop)",
        _NO_COLD_RUN,
    ),
    "recv_write": StepText(
        "socket→file",
        "control: the same socket → file job by recv + write",
        "§三.1's copies applied to receiving: the control for splice receive",
        _NO_COLD_RUN,
    ),
}


def _step(step_id: str, runs: list[Run]) -> Step:
    """The step's document: its texts, its runs, then its note when it has one (keys in the schema's order)."""
    text = STEP_TEXTS[step_id]
    step: Step = {"id": step_id, "job": text.job, "title": text.title, "article": text.article, "runs": runs}
    if text.note is not None:
        step["note"] = text.note
    return step


@dataclass
class TourOptions:
    size: int = DEFAULT_SIZE
    file: Path | None = None
    keep: bool = False
    cold: bool = True
    repeats: int = 3  # warm runs per path; the median-CPU one is shown
    workdir: Path | None = None  # where the temp dir goes (default: the system temp dir)


# ---------------------------------------------------------------- the sample file


def sample_block(length: int = 1 << 20) -> bytes:
    """`length` bytes of text lines with exactly one b"old" per HIT_EVERY bytes and no b"new" anywhere."""
    line = b"zero-copy tour: disk, page cache, user buffer, socket buffer, NIC.\n"  # 67 bytes
    block = bytearray()
    while len(block) < length:
        unit = bytearray((line * (HIT_EVERY // len(line) + 1))[:HIT_EVERY])
        unit[100:103] = OLD
        block += unit
    return bytes(block[:length])


def write_sample(path: Path, size: int) -> None:
    block = sample_block()
    with FileChannel.open(path, "w") as ch:
        done = 0
        while done < size:
            done += ch.write(block[: size - done])
        ch.force()


# ---------------------------------------------------------------- measurement helpers


def counters_of(obs: Any) -> dict[str, Any]:
    """Totals of an observe() block as the schema's plain dict."""
    t = obs.totals
    out: dict[str, Any] = {}
    for key in COUNTERS:
        # CPU, context switches and faults live in totals.usage (getrusage deltas), the rest on totals.
        value = getattr(t, key) if hasattr(t, key) else getattr(t.usage, key)
        out[key] = dict(value) if key == "syscalls" else value
    return out


def skipped_of(obs: Any) -> list[list[str]]:
    seen: list[list[str]] = []
    for op in obs.operations:
        for route, reason in op.skipped:
            if [route, reason] not in seen:
                seen.append([route, str(reason)])
    return seen


def resident_pages(path: Path) -> int | None:
    """How many of the file's pages are in the page cache now, by mincore(2) over a mapping that touches none
    of them; None where mincore is not reachable (non-glibc libc, not Linux): then only the disk counters judge.

    (preadv2 with RWF_NOWAIT is no probe: measured here, it started readahead for every page it asked about.)
    """
    size = path.stat().st_size
    if size == 0:
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mincore = libc.mincore
    except (OSError, AttributeError):
        return None
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        # MAP_PRIVATE + PROT_WRITE only so ctypes can take the address; nothing is written or read through it.
        with mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE) as m:
            anchor = ctypes.c_char.from_buffer(m)
            try:
                if mincore(ctypes.addressof(anchor), size, vec) != 0:
                    return None
            finally:
                del anchor  # release the buffer export before the mapping closes
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec)


def evict(path: Path, deadline_s: float = EVICT_DEADLINE_S) -> int | None:
    """Drop the file's pages from the page cache without root: write back dirty pages, then DONTNEED, repeated
    while mincore still sees pages and the deadline allows. Returns the pages still resident (None: unknown)."""
    total = (path.stat().st_size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        end = time.monotonic() + deadline_s
        while True:
            # DONTNEED drops only clean pages nobody references; a page still held (a socket's skb, a mapping)
            # stays, and is released a moment later.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            left = resident_pages(path)
            # Every page still there means this filesystem keeps them (tmpfs: the page cache is the file);
            # waiting would not help, and the cold check will say so.
            if not left or left >= total or time.monotonic() >= end:
                return left
            time.sleep(EVICT_RETRY_S)
    finally:
        os.close(fd)


def _close_after_peer(sock: SocketChannel) -> None:
    """Half-close, then wait for the peer's EOF: TCP delivers it after every ACK for our data, so the socket no
    longer holds sendfile's page-cache pages for retransmission (they would survive the next cold eviction)."""
    sock.shutdown_output()
    while sock.read(1 << 16):
        pass


def _peer_cpu(peer: Peer, role: str) -> dict[str, Any]:
    """The other process's CPU for the same transfer: on loopback the kernel's TCP work lands on either side."""
    return {"role": role, "cpu_user_s": peer.cpu_user_s, "cpu_sys_s": peer.cpu_sys_s}


def cold_check(disk_read: int, expected: int, resident_pages: int | None = None) -> dict[str, Any]:
    """The disk counters decide: a cold run must have read (nearly) every byte from the disk."""
    verified = disk_read >= render.COLD_SHARE * expected
    note = None
    if not verified:
        note = "pages stayed cached: the filesystem may be tmpfs, or something still referenced them"
        if resident_pages:
            note += f" ({resident_pages} pages were still resident after eviction)"
    return {"requested": True, "verified": verified, "disk_read_bytes": disk_read, "expected_bytes": expected,
            "resident_pages_after_evict": resident_pages, "note": note}  # fmt: skip


class Tour:
    """One tour run: holds the working files and the notes about routes that were not available."""

    def __init__(self, opts: TourOptions, tmp: Path) -> None:
        self.opts = opts
        self.tmp = tmp
        self.unavailable: list[str] = []
        self.flips = 0
        if opts.file is not None:
            self.path = opts.file
            self.size = opts.file.stat().st_size
            # Never edit the user's file: the edit paths work on a copy in the temp dir.
            self.edit_path = tmp / "edit-copy"
            zcopy.copy(str(self.path), str(self.edit_path))
            with FileChannel.open(self.edit_path, "r+") as ch:
                ch.force()
        else:
            self.path = tmp / "tour.dat"
            self.size = opts.size
            write_sample(self.path, self.size)
            self.edit_path = self.path

    # ------------------------------------------------------------ run wrapper

    def _run(self, mode: str, src: Path | None, body: Callable[[], Run]) -> Run:
        left = evict(src) if mode == "cold" and src is not None else None
        run = body()
        run["mode"] = mode
        if mode == "cold" and src is not None:
            run["cold"] = cold_check(run["counters"]["disk_read_bytes"], run["nbytes"], left)
        c = run["counters"]
        run["throughput_mib_s"] = run["nbytes"] / c["wall_s"] / MiB if c["wall_s"] > 0 else 0.0
        return run

    def _runs(self, one: Callable[[str], Run]) -> list[Run]:
        """The cold run (once: it is dominated by the disk) and the median of the warm repeats."""
        runs = [one("cold")] if self.opts.cold else []
        return [*runs, self._median(one, "warm")]

    def _median(self, one: Callable[[str], Run], mode: str) -> Run:
        """Repeat a run; keep the one with the median CPU time (all its counters come from that one real run)
        and attach the spread, because CPU on loopback shifts between sender and receiver from run to run."""
        reps = [one(mode) for _ in range(self.opts.repeats)]
        cpu = [render.cpu_s(r["counters"]) for r in reps]
        chosen = sorted(range(len(reps)), key=lambda i: cpu[i])[(len(reps) - 1) // 2]
        run = reps[chosen]
        run["repeats"] = {"n": len(reps), "cpu_s": summarize(cpu).as_dict(),
                          "wall_s": summarize([r["counters"]["wall_s"] for r in reps]).as_dict()}  # fmt: skip
        return run

    def _pair(self) -> tuple[bytes, bytes]:
        a, b = (OLD, NEW) if self.flips % 2 == 0 else (NEW, OLD)
        self.flips += 1
        return a, b

    def _transfer(self, do: Callable[[str | None], int], intended: str) -> tuple[int, str, list[list[str]]]:
        """Try the intended route; if the kernel/filesystem refuses it, note why and let zcopy pick."""
        try:
            return do(intended), intended, []
        except RouteUnavailable as exc:
            # The core's reason may already name the route ("copy_file_range: EXDEV, ..."): say it once.
            reason = exc.reason.removeprefix(f"{intended}: ")
            note = f"{intended} unavailable here: {reason}; zcopy chose the route itself"
            if note not in self.unavailable:
                self.unavailable.append(note)
            return do(None), intended, [[intended, reason]]

    # ------------------------------------------------------------ steps

    def traditional(self, mode: str) -> Run:
        def body() -> Run:
            a, b = self._pair()
            hits = 0
            # The buffer overlaps the next chunk by len-1 bytes so a hit that straddles two chunks is seen.
            buf = bytearray(EDIT_CHUNK + len(a) - 1)
            ch = FileChannel.open(self.edit_path, "r+")
            try:
                with observe() as work:
                    pos = 0
                    while True:
                        n = ch.readinto(buf, position=pos)
                        if n == 0:
                            break
                        data = buf[:n]
                        hits += data.count(a)
                        ch.write(data.replace(a, b), position=pos)
                        if n < len(buf):
                            break
                        pos += EDIT_CHUNK
                with observe() as flush:
                    ch.force()
                    ch.close()
            finally:
                ch.close()  # idempotent: only matters when the edit failed
            return self._edit_run("readwrite", work, flush, hits, a, b)

        return self._run(mode, self.edit_path, body)

    def mmap(self, mode: str) -> Run:
        def body() -> Run:
            a, b = self._pair()
            hits = 0
            ch = FileChannel.open(self.edit_path, "r+")
            try:
                with observe() as work:
                    m = ch.map(MapMode.READ_WRITE)
                    i = m.find(a)
                    while i != -1:
                        m[i : i + len(a)] = b
                        hits += 1
                        i = m.find(a, i + len(a))
                with observe() as flush:
                    m.force()
                    m.close()
                    ch.close()
            finally:
                ch.close()  # idempotent: only matters when the edit failed (the mapping dies with the process)
            return self._edit_run("mmap-edit", work, flush, hits, a, b)

        return self._run(mode, self.edit_path, body)

    def _edit_run(self, model: str, work: Any, flush: Any, hits: int, a: bytes, b: bytes) -> Run:
        wc, fc = counters_of(work), counters_of(flush)
        flow, cpu, dma = flows.edit_flow(model)
        return {
            "route": model, "requested_route": None, "skipped": [], "flow": flow,
            "cpu_copies": cpu, "dma_copies": dma, "nbytes": self.size,
            "model": flows.EDIT_MODELS[model].as_dict(),  # the hops, as data, for the --report diagrams
            "counters": merge_counters(wc, fc),
            "force": {"dirty_kb_before": fc["dirty_kb_before"], "dirty_kb_after": fc["dirty_kb_after"],
                      "wall_s": fc["wall_s"], "disk_write_bytes": fc["disk_write_bytes"]},
            "cold": None, "peer": None, "edit": {"replaced": hits, "from": a.decode(), "to": b.decode()},
        }  # fmt: skip

    def to_socket(self, mode: str, route: str) -> Run:
        def body() -> Run:
            with Peer("sink") as peer, FileChannel.open(self.path, "r") as ch:
                assert peer.address is not None
                sock = SocketChannel.open(peer.address)
                try:
                    with observe() as obs:

                        def do(r: str | None) -> int:
                            return ch.transfer_to(0, self.size, sock, route=r)

                        n, asked, extra = self._transfer(do, route)
                        used = ch.last_route or "unknown"
                    _close_after_peer(sock)
                finally:
                    sock.close()
                received = peer.finish()
            if received != n:
                raise RuntimeError(f"the sink received {received} bytes, {n} were sent")
            run = self._transfer_run(used, asked, obs, extra, n, "file", "socket")
            run["peer"] = _peer_cpu(peer, "receiving peer, splice to /dev/null")
            return run

        return self._run(mode, self.path, body)

    def receive(self, mode: str, route: str) -> Run:
        def body() -> Run:
            dest = self.tmp / "received"
            try:
                with Peer("source", str(self.path), str(self.size)) as peer:
                    assert peer.address is not None
                    sock = SocketChannel.open(peer.address)
                    try:
                        with observe() as work:
                            out = FileChannel.open(dest, "w")

                            def do(r: str | None) -> int:
                                return out.transfer_from(sock, 0, self.size, route=r)

                            n, asked, extra = self._transfer(do, route)
                            used = out.last_route or "unknown"
                        with observe() as flush:
                            out.force()
                            out.close()
                    finally:
                        sock.close()
                    peer.finish()
                if n != self.size:
                    raise RuntimeError(f"received {n} of {self.size} bytes: the sending peer stopped early")
                run = self._transfer_run(used, asked, work, extra, n, "socket", "file", flush)
                run["peer"] = _peer_cpu(peer, "sending peer, by sendfile")
                return run
            finally:
                dest.unlink(missing_ok=True)

        return self._run(mode, None, body)

    def file_copy(self, mode: str, route: str = "copy_file_range") -> Run:
        """The file → a new file by `route`, then force: a durable copy, so every route pays for its disk writes
        (direct during the copy, the page-cache routes at force)."""

        def body() -> Run:
            dest = self.tmp / "copy"
            try:
                with FileChannel.open(self.path, "r") as src:
                    with observe() as work:
                        out = FileChannel.open(dest, "w")

                        def do(r: str | None) -> int:
                            return src.transfer_to(0, self.size, out, route=r)

                        n, asked, extra = self._transfer(do, route)
                        used = src.last_route or "unknown"
                    with observe() as flush:
                        out.force()
                        out.close()
                if n != self.size:
                    raise RuntimeError(f"copied {n} of {self.size} bytes: the file changed during the tour")
                return self._transfer_run(used, asked, work, extra, n, "file", "file", flush)
            finally:
                dest.unlink(missing_ok=True)

        return self._run(mode, self.path, body)

    def _transfer_run(
        self, used: str, asked: str, work: Any, extra: list[list[str]], n: int, src: str, dst: str,
        flush: Any | None = None,
    ) -> Run:  # fmt: skip
        flow, cpu, dma = flows.route_flow(used, src, dst)
        counters = counters_of(work)
        force = None
        if flush is not None:
            fc = counters_of(flush)
            counters = merge_counters(counters, fc)
            force = {"dirty_kb_before": fc["dirty_kb_before"], "dirty_kb_after": fc["dirty_kb_after"],
                     "wall_s": fc["wall_s"], "disk_write_bytes": fc["disk_write_bytes"]}  # fmt: skip
        if used != asked:
            note = f"{asked} was not used for {src}→{dst}: the route taken was {used}"
            if not extra and note not in self.unavailable:
                self.unavailable.append(note)
        # The fallback run usually tried the refused route again and recorded why; keep one reason per route.
        skipped = skipped_of(work)
        skipped += [e for e in extra if e[0] not in {r for r, _ in skipped}]
        return {
            "route": used, "requested_route": asked, "skipped": skipped, "flow": flow,
            "cpu_copies": cpu, "dma_copies": dma, "nbytes": n, "counters": counters, "force": force,
            "cold": None, "peer": None, "model": copy_model(used, src, dst).as_dict(),
        }  # fmt: skip

    # ------------------------------------------------------------ the whole tour

    def steps(self) -> Iterator[Step]:
        yield _step("traditional", self._runs(self.traditional))
        mm = _step("mmap", self._runs(self.mmap))
        counted = set().union(*(r["counters"]["syscalls"] for r in mm["runs"]))
        missing = sorted({"mmap", "msync", "munmap"} - counted)
        if missing:
            mm["note"] = (f"zcopy.observe did not report {', '.join(missing)} for this path, so its syscall count "
                          f"is {len(missing)}+ too low; the page faults are the kernel work that replaced read()")
        yield mm
        yield _step("sendfile", self._runs(lambda m: self.to_socket(m, "sendfile")))
        yield _step("read_send", self._runs(lambda m: self.to_socket(m, "readwrite")))
        yield _step("copy_file_range", self._runs(self.file_copy))
        yield _step("direct_copy", self._runs(lambda m: self.file_copy(m, "direct")))
        yield _step("readwrite_copy", self._runs(lambda m: self.file_copy(m, "readwrite")))
        # The receive steps come last: a sender's socket keeps the file's pages referenced until they are ACKed
        # (pages can survive DONTNEED for a while after the peer's sendfile), which would make a cold run after
        # them only partly cold. Both ends also wait for each other's EOF (see
        # _close_after_peer and the peer's source mode) so every page is released before the next step.
        yield _step("splice_recv", [self._median(lambda m: self.receive(m, "splice"), "warm")])
        yield _step("recv_write", [self._median(lambda m: self.receive(m, "readwrite"), "warm")])


def machine() -> dict[str, Any]:
    return {"kernel": platform.release(), "python": platform.python_version(), "cpus": os.cpu_count() or 1,
            "system": platform.system(), "machine": platform.machine()}  # fmt: skip


def fs_type(path: Path) -> str | None:
    """The filesystem holding path, from /proc/self/mounts (longest mount point that prefixes it)."""
    best, kind = "", None
    real = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind


def run_tour(
    opts: TourOptions,
    on_step: Callable[[int, Step], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every step and return the tour document (schema zcopy.tour/1); on_start sees the document once the
    file is ready, on_step each finished step."""
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="zcopy-tour-", dir=opts.workdir))
    try:
        tour = Tour(opts, tmp)
        doc: dict[str, Any] = {
            "schema": TOUR_VERSION,
            "zcopy_version": zcopy.__version__,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine(),
            "file": {"path": str(tour.path), "size": tour.size, "generated": opts.file is None,
                     "kept": opts.keep, "fs_type": fs_type(tour.path)},
            "cold_runs": opts.cold,
            "repeats": opts.repeats,
            "steps": [],
        }
        if on_start is not None:
            on_start(doc)
        for i, step in enumerate(tour.steps(), 1):
            doc["steps"].append(step)
            if on_step is not None:
                on_step(i, step)
        doc["unavailable"] = tour.unavailable
        doc["comparison"] = {"headers": list(render.COMPARISON_HEADERS), "rows": render.comparison_rows(doc)}
        doc["conclusions"] = [{"path": p, "sentence": s} for p, s in render.conclusions(doc)]
        doc["wall_s"] = time.perf_counter() - started
        if opts.keep:
            doc["workdir"] = str(tmp)
        return doc
    finally:
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
