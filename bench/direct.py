"""Direct-route benchmark: O_DIRECT against the page-cache ways, on cold data (and a warm-source control).

Every contender in one run with the order shuffled per round; per-round ratios (median, min–max) against the peer
measured in the same round. 1 GiB by default. Jobs: the issue's probes (O_DIRECT read and write at QD1, 8 and 32 MiB
blocks), the sweep that picks the direct route's block size and buffers in flight, durable cold copy (zcopy cp vs
cp + sync FILE, wall and the whole machine's busy time from /proc/stat), the same with a warm source (zcopy cp must
pick copy_file_range), cold whole-file reads (zcopy.read_file vs readinto, and the read_file queue-depth sweep), and
a receiver writing a new file from a socket, fsync included (direct overlapped vs direct serial vs recv_into + write
vs splice; the receiving process's CPU, its writer thread included).
Usage: python bench/direct.py [--quick] [--size BYTES] [--rounds N] [--out FILE.md]
"""

from __future__ import annotations

import datetime
import json
import mmap
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))
from _common import (
    SENDFILE_PEER,
    MiB,
    Result,
    Sample,
    command_line,
    drop_dirty,
    file_bench_args,
    load_average,
    machine,
    other_work,
    run_rounds,
    sh,
    source_file,
    start_peer,
    table,
    timed,
    warm,
    write_report,
)

import zcopy
from zcopy import FileChannel, pagecache
from zcopy.aligned import fs_type
from zcopy.routes import direct

Busy = dict[str, list[float]]  # contender → the whole machine's busy seconds, one per round


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat, all CPUs: everything but idle and iowait), so the
    kernel's writeback threads count for whoever made the dirty pages."""
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:9]]
    return (sum(t) - t[3] - t[4]) / os.sysconf("SC_CLK_TCK")


def kthreads_cpu() -> float:
    """CPU seconds of the kernel's threads so far (children of kthreadd: writeback workers, kswapd...): the part of
    the machine's busy time that a copy causes outside its own process (other sessions' writeback too)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if rest[1] == "2" or pid == "2":  # ppid 2: a kernel thread
            total += int(rest[11]) + int(rest[12])
    return total / os.sysconf("SC_CLK_TCK")


def process_cpu() -> float:
    """CPU seconds of this whole process (every thread: the direct writer's helper included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_timed(fn: Callable[[], object]) -> Sample:
    c0, t0 = process_cpu(), time.perf_counter()
    fn()
    return Sample(time.perf_counter() - t0, process_cpu() - c0)


def with_busy(busy: Busy, kbusy: Busy, name: str, fn: Callable[[], Sample]) -> Callable[[], Sample]:
    """fn, with the machine's busy time and the contender's own CPU plus the kernel threads' over it recorded."""
    def run() -> Sample:
        b0, k0 = machine_busy(), kthreads_cpu()
        sample = fn()
        busy.setdefault(name, []).append(machine_busy() - b0)
        kbusy.setdefault(name, []).append(kthreads_cpu() - k0 + sample.cpu_s)
        return sample

    return run


def per_round(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the ratios a[i] / b[i] of the same rounds."""
    rs = [x / y for x, y in zip(a, b, strict=True) if y > 0]
    return (statistics.median(rs), min(rs), max(rs)) if rs else (float("nan"),) * 3


def ratio(results: dict[str, Result], a: str, b: str, attr: str) -> tuple[float, float, float]:
    return per_round([getattr(x, attr) for x in results[a].samples], [getattr(x, attr) for x in results[b].samples])


def fmt(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.2f}× ({r[1]:.2f}–{r[2]:.2f})"


class Tuned:
    """The direct route's block size and buffers in flight set for one contender (module constants the route reads
    at each call), put back after."""

    def __init__(self, chunk: int, depth: int) -> None:
        self.chunk, self.depth = chunk, depth

    def __enter__(self) -> None:
        self.saved = direct.CHUNK, direct.DEPTH
        direct.CHUNK, direct.DEPTH = self.chunk, self.depth

    def __exit__(self, *exc: object) -> None:
        direct.CHUNK, direct.DEPTH = self.saved


def evict(path: str) -> float | None:
    """Write back and drop the file's pages (no root needed); returns the fraction still resident (None: unknown).
    Untimed; the benchmark reports the worst residency it saw instead of assuming eviction worked."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return pagecache.residency(fd).fraction
    finally:
        os.close(fd)


class Cold:
    """Evicts the source before every contender and remembers the worst residency left (the proof it was cold)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.worst = 0.0

    def __call__(self) -> None:
        drop_dirty()
        left = evict(self.path)
        if left is not None:
            self.worst = max(self.worst, left)


def copies(
    src: str, tmp: str, rounds: int, cold: bool
) -> tuple[dict[str, Result], Busy, Busy, dict[str, list[str]], float]:
    """Durable (cold) or plain (warm) file → file copies. Returns results, the whole machine's busy time per round,
    the contender's own CPU plus the kernel threads' per round, the routes `zcopy cp` chose in each round, and the
    worst residency seen before a cold contender."""
    dst = os.path.join(tmp, "copy")
    zcopy_exe = shutil.which("zcopy") or os.path.join(os.path.dirname(sys.executable), "zcopy")
    chose: dict[str, list[str]] = {}
    prep = Cold(src) if cold else (lambda: (drop_dirty(), warm(src)))
    busy: Busy = {}
    kbusy: Busy = {}

    def then_clean(sample: Sample) -> Sample:
        os.unlink(dst)
        return sample

    def zcopy_cli(*extra: str) -> Sample:
        c0, t0 = _children(), time.perf_counter()
        out = subprocess.run([zcopy_exe, "cp", "--json", *extra, src, dst], check=True, capture_output=True, text=True)
        sample = Sample(time.perf_counter() - t0, _children() - c0)
        doc = json.loads(out.stdout)
        chose.setdefault(" ".join(extra) or "auto", []).append(doc["route"])
        return then_clean(sample)

    def cfr_fsync() -> None:
        with FileChannel.open(src) as s, FileChannel.open(dst, "w") as d:
            s.transfer_to(0, s.size(), d, route="copy_file_range")
            d.force()

    contenders: dict[str, Callable[[], Sample]] = {
        "zcopy cp (CLI, chooses)": lambda: zcopy_cli(),
        "zcopy cp --route direct (CLI, fsyncs)": lambda: zcopy_cli("--route", "direct"),
        "cp + sync FILE": lambda: then_clean(sh(["sh", "-c", 'cp "$0" "$1" && sync "$1"', src, dst])),
    }
    def head(route: str) -> Sample:
        """The first PROBE bytes only, made durable: what a short probe of each route would see."""
        with FileChannel.open(src) as s, FileChannel.open(dst, "w") as d:
            def go() -> None:
                s.transfer_to(0, PROBE, d, route=route)
                d.force()

            return then_clean(proc_timed(go))

    if cold:
        contenders["copy_file_range + fsync"] = lambda: then_clean(timed(cfr_fsync))
        contenders[f"probe: first {PROBE >> 20} MiB by copy_file_range + fsync"] = lambda: head("copy_file_range")
        contenders[f"probe: first {PROBE >> 20} MiB by direct + fsync"] = lambda: head("direct")
    else:
        contenders["cp"] = lambda: then_clean(sh(["cp", src, dst]))
    timed_ = {n: with_busy(busy, kbusy, n, f) for n, f in contenders.items()}
    results = run_rounds({n: _before(prep, f) for n, f in timed_.items()}, rounds, between=drop_dirty)
    return results, busy, kbusy, chose, prep.worst if isinstance(prep, Cold) else 1.0


def probes(src: str, tmp: str, size: int, rounds: int) -> dict[str, Result]:
    """The issue's probes: the whole file by O_DIRECT at queue depth 1 (one request at a time), cold reads and
    durable writes (fsync at the end), 8 and 32 MiB requests."""
    dst = os.path.join(tmp, "probe")
    prep = Cold(src)

    def read(bs: int) -> Sample:
        prep()
        buf = memoryview(mmap.mmap(-1, bs))
        fd = os.open(src, os.O_RDONLY | os.O_DIRECT)
        try:
            def go() -> None:
                off = 0
                while off < size and (n := os.preadv(fd, [buf], off)):
                    off += n

            return proc_timed(go)
        finally:
            os.close(fd)

    def write(bs: int) -> Sample:
        buf = memoryview(mmap.mmap(-1, bs))
        buf[:] = os.urandom(bs)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT)
        try:
            def go() -> None:
                off = 0
                while off < size:
                    off += os.pwritev(fd, [buf[: min(bs, size - off)]], off)
                os.fsync(fd)

            return proc_timed(go)
        finally:
            os.close(fd)
            os.unlink(dst)

    contenders: dict[str, Callable[[], Sample]] = {}
    for mib in (8, 32):
        contenders[f"O_DIRECT read, QD1, {mib} MiB"] = lambda mib=mib: read(mib * MiB)  # type: ignore[misc]
        contenders[f"O_DIRECT write + fsync, QD1, {mib} MiB"] = lambda mib=mib: write(mib * MiB)  # type: ignore[misc]
    return run_rounds(contenders, rounds, between=drop_dirty)


PROBE = 32 << 20  # a short probe of each route, against whole copies (why zcopy.diskrates measures whole copies)
SWEEP_CHUNKS = (2, 4, 8, 16, 32)  # MiB per O_DIRECT request
SWEEP_DEPTHS = (1, 2, 3, 4)  # buffers in flight: 1 = read, write, read... (the route before issue #22)


def sweep(src: str, tmp: str, rounds: int) -> dict[str, Result]:
    """Cold durable file → file by the direct route (transfer_to + fsync, in process), block size × buffers."""
    dst = os.path.join(tmp, "sweep")
    prep = Cold(src)

    def run(chunk: int, depth: int) -> Sample:
        prep()
        with Tuned(chunk, depth), FileChannel.open(src) as s, FileChannel.open(dst, "w") as d:
            def go() -> None:
                assert s.transfer_to(0, s.size(), d, route="direct") == s.size()
                d.force()

            sample = proc_timed(go)
        os.unlink(dst)
        return sample

    contenders: dict[str, Callable[[], Sample]] = {
        f"{c} MiB × {q}": (lambda c=c, q=q: run(c * MiB, q))  # type: ignore[misc]
        for c in SWEEP_CHUNKS for q in SWEEP_DEPTHS
    }
    return run_rounds(contenders, rounds, between=drop_dirty)


def read_sweep(src: str, size: int, rounds: int) -> dict[str, Result]:
    """Cold whole-file O_DIRECT reads into one reused aligned buffer: read_file's single preadv (the block layer
    splits it and keeps the pieces in flight together) against 8 MiB requests from 1, 2 or 4 threads."""
    out = zcopy.aligned_buffer(size)
    out[:] = bytes(size)  # touched once: every contender reads into resident memory
    prep = Cold(src)

    def threads(bs: int, qd: int) -> None:
        fd = os.open(src, os.O_RDONLY | os.O_DIRECT)
        nxt = [0]
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    off = nxt[0]
                    nxt[0] += bs
                if off >= size:
                    return
                os.preadv(fd, [out[off : off + bs]], off)

        ts = [threading.Thread(target=worker) for _ in range(qd)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        os.close(fd)

    contenders: dict[str, Callable[[], Sample]] = {
        "read_file(into=) (one preadv)": lambda: proc_timed(lambda: zcopy.read_file(src, into=out, direct=True)),
    }
    for qd in (1, 2, 4):
        contenders[f"8 MiB requests, {qd} thread(s)"] = lambda qd=qd: proc_timed(  # type: ignore[misc]
            lambda: threads(8 * MiB, qd))
    return run_rounds({n: _before(prep, f) for n, f in contenders.items()}, rounds)  # type: ignore[arg-type]


def _children() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _before(prep: object, fn: object) -> object:
    def run() -> Sample:
        prep()  # type: ignore[operator]
        return fn()  # type: ignore[operator,no-any-return]

    return run


def reads(src: str, size: int, rounds: int) -> tuple[dict[str, Result], float]:
    """Cold whole-file reads into a reused buffer and into new memory."""
    reused = zcopy.aligned_buffer(size)
    prep = Cold(src)

    def readinto(buf: memoryview | bytearray) -> None:
        with open(src, "rb", buffering=0) as f:
            view = memoryview(buf)
            got = 0
            while got < size:
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
        assert got == size

    def check(view: memoryview) -> None:
        assert len(view) == size

    contenders = {
        "reused: zcopy.read_file(into=aligned)": lambda: proc_timed(lambda: check(zcopy.read_file(src, into=reused))),
        "reused: readinto the same buffer": lambda: proc_timed(lambda: readinto(reused)),
        "new: zcopy.read_file()": lambda: proc_timed(lambda: check(zcopy.read_file(src))),
        "new: readinto bytearray(size)": lambda: proc_timed(lambda: readinto(bytearray(size))),
    }
    try:
        import numpy

        contenders["new: numpy.fromfile"] = lambda: proc_timed(lambda: numpy.fromfile(src, dtype=numpy.uint8))
    except ImportError:
        pass
    results = run_rounds({n: _before(prep, f) for n, f in contenders.items()}, rounds)  # type: ignore[arg-type]
    return results, prep.worst


def receive(src: str, size: int, rounds: int, tmp: str) -> dict[str, Result]:
    """socket → new file, the receiving thread's CPU including the fsync that makes the file durable."""
    peer, port = start_peer(SENDFILE_PEER, src)  # sendfile()s the (warm) source to each connection, on CPU 1
    addr = ("127.0.0.1", port)
    dst = os.path.join(tmp, "received")

    def measure(recv: object) -> Sample:
        sock = socket.create_connection(addr)
        try:
            with FileChannel.open(dst, "w") as out:
                c0, t0 = process_cpu(), time.perf_counter()  # the whole receiving process: its writer thread too
                recv(sock, out)  # type: ignore[operator]
                out.force()
                return Sample(time.perf_counter() - t0, process_cpu() - c0)
        finally:
            sock.close()
            os.unlink(dst)

    def by(route: str | None, overlap: bool = False) -> object:
        def go(sock: socket.socket, out: FileChannel) -> None:
            saved = direct.STREAM_OVERLAP
            direct.STREAM_OVERLAP = overlap
            try:
                assert out.transfer_from(sock, 0, size, route=route) == size
            finally:
                direct.STREAM_OVERLAP = saved

        return go

    def recv_into_write(sock: socket.socket, out: FileChannel) -> None:
        buf = bytearray(MiB)
        view = memoryview(buf)
        fd = out.fileno()
        while n := sock.recv_into(buf):
            done = 0
            while done < n:
                done += os.write(fd, view[done:n])

    contenders = {
        "transfer_from(route=\"direct\")": lambda: measure(by("direct")),
        "transfer_from(route=\"direct\"), overlapped (helper thread)": lambda: measure(by("direct", True)),
        "recv_into + write 1 MiB": lambda: measure(recv_into_write),
        "transfer_from (splice)": lambda: measure(by("splice")),
    }
    warm(src)
    try:
        return run_rounds(contenders, rounds, between=drop_dirty)
    finally:
        peer.kill()


def _rows(results: dict[str, Result], base: str, attrs: tuple[str, ...] = ("cpu_s", "wall_s")) -> list[list[str]]:
    rows = []
    for name, r in results.items():
        row = [name]
        for attr in attrs:
            ref = results[base].med(attr)
            row += [f"{r.med(attr):.3f}", f"{r.lo(attr):.3f} – {r.hi(attr):.3f}",
                    f"{r.med(attr) / ref:.2f}×" if ref > 0 else "–"]  # fmt: skip
        rows.append(row)
    return rows


def _ratio(results: dict[str, Result], a: str, b: str, attr: str) -> float:
    return results[a].med(attr) / results[b].med(attr)


def _route_counts(routes_seen: list[str]) -> str:
    return ", ".join(f"{r} × {routes_seen.count(r)}" for r in sorted(set(routes_seen))) or "?"


def main(argv: list[str] | None = None) -> int:
    args, size, rounds = file_bench_args(argv, __doc__, 5)
    cache = os.path.join(os.environ.get("ZCOPY_BENCH_DIR") or "/tmp", ".zcopy-bench-cache")
    os.environ["XDG_CACHE_HOME"] = cache
    shutil.rmtree(cache, ignore_errors=True)  # zcopy cp measures the routes afresh in the first round
    with source_file("zcopy-bench-direct-", size) as (tmp, src):
        fd = os.open(src, os.O_RDONLY)
        try:
            fs = fs_type(fd)
        finally:
            os.close(fd)
        pr = probes(src, tmp, size, rounds)
        sw = sweep(src, tmp, max(3, rounds - 2))
        cold, busy_cold, kbusy_cold, chose_cold, worst_copy = copies(src, tmp, rounds, cold=True)
        warmr, _, _, chose_warm, _ = copies(src, tmp, max(rounds, 9), cold=False)
        rd, worst_read = reads(src, size, rounds)
        rs = read_sweep(src, size, max(3, rounds - 2))
        rx = receive(src, size, rounds, tmp)
    shutil.rmtree(cache, ignore_errors=True)

    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cmd = command_line("bench/direct.py", argv)
    h2 = ["contender", "CPU s", "min – max", "vs base", "wall s", "min – max", "vs base"]
    auto, d, cp, cfr = "zcopy cp (CLI, chooses)", "zcopy cp --route direct (CLI, fsyncs)", "cp + sync FILE", \
        "copy_file_range + fsync"
    pc, pd = (f"probe: first {PROBE >> 20} MiB by copy_file_range + fsync",
              f"probe: first {PROBE >> 20} MiB by direct + fsync")
    r_new, r_old = "reused: zcopy.read_file(into=aligned)", "reused: readinto the same buffer"
    n_new, n_old = "new: zcopy.read_file()", "new: readinto bytearray(size)"
    dx, do, rw, sp = ("transfer_from(route=\"direct\")", "transfer_from(route=\"direct\"), overlapped (helper thread)",
                      "recv_into + write 1 MiB", "transfer_from (splice)")

    def met(r: tuple[float, float, float], target: float) -> str:
        return f"**{fmt(r)}** (target ≤ {target}×, {'met' if r[0] <= target else '**not met**'})"

    wall_auto = ratio(cold, auto, cp, "wall_s")
    busy_auto = per_round(busy_cold[auto], busy_cold[cp])
    wall_warm = ratio(warmr, auto, "cp", "wall_s")
    probe_rows = [[n, f"{r.med('wall_s'):.3f}", f"{r.lo('wall_s'):.3f} – {r.hi('wall_s'):.3f}",
                   f"{size / r.med('wall_s') / MiB:.0f}"] for n, r in pr.items()]  # fmt: skip
    best = min(sw, key=lambda n: sw[n].med("wall_s"))
    serial8 = "8 MiB × 1"
    sweep_rows = [[n, f"{r.med('wall_s'):.3f}", f"{r.lo('wall_s'):.3f} – {r.hi('wall_s'):.3f}",
                   fmt(ratio(sw, n, serial8, "wall_s")), f"{r.med('cpu_s'):.3f}"]
                  for n, r in sorted(sw.items(), key=lambda kv: kv[1].med("wall_s"))]  # fmt: skip
    rs_rows = [[n, f"{r.med('wall_s'):.3f}", f"{r.lo('wall_s'):.3f} – {r.hi('wall_s'):.3f}",
                fmt(ratio(rs, n, "read_file(into=) (one preadv)", "wall_s"))] for n, r in rs.items()]  # fmt: skip
    busy_rows = [[n, f"{statistics.median(v):.3f}", f"{min(v):.3f} – {max(v):.3f}",
                  fmt(per_round(v, busy_cold[cp])), f"{statistics.median(kbusy_cold[n]):.3f}",
                  f"{min(kbusy_cold[n]):.3f} – {max(kbusy_cold[n]):.3f}", fmt(per_round(kbusy_cold[n], kbusy_cold[cp]))]
                 for n, v in busy_cold.items()]  # fmt: skip
    kbusy_auto = per_round(kbusy_cold[auto], kbusy_cold[cp])

    text = f"""## Direct route: O_DIRECT vs the page cache ({when})

Machine: {machine()}; load average at end {load_average()}; {other_work()}. File system of the files: {fs}.
Command: `{cmd}` (file {size / MiB:.0f} MiB, {rounds} rounds unless said, order shuffled per round; ratios are
the median of per-round ratios against the base measured in the same round, with min–max). Process pinned to CPU 0;
the socket peer to CPU 1. "Cold": before every contender the source is fsynced and dropped with
posix_fadvise(DONTNEED), then probed with mincore (worst residency seen: copies {worst_copy:.1%}, reads
{worst_read:.1%}). CPU: in-process contenders the whole process's user+sys (RUSAGE_SELF: the direct writer's helper
thread counts), CLI contenders their children's (`zcopy cp` includes Python's start-up and imports, `cp + sync` runs
under `sh`); "machine busy" is /proc/stat's busy time of all CPUs over the contender (writeback threads included,
other sessions' work too).

### The issue's probes: O_DIRECT at queue depth 1
{table(["probe (whole file)", "wall s", "min – max", "MiB/s"], probe_rows)}

### Sweep: the direct route's block size × buffers in flight
Cold durable copy by the route in process, {max(3, rounds - 2)} rounds.

{table(["block × buffers", "wall s", "min – max", "vs 8 MiB × 1 (serial)", "CPU s"], sweep_rows)}

Fastest here: **{best}**; the route uses {direct.CHUNK >> 20} MiB × {direct.DEPTH} (docs/architecture.md says why).

### Cold source, durable copy (data on the disk when it returns)
{table(h2, _rows(cold, cp))}

Machine busy (s): all CPUs from /proc/stat, and the part this copy can cause: its own CPU plus the kernel
threads' (writeback; on this shared VM other sessions' writeback lands there too, and their processes in the
first column).
{table(["contender", "machine busy s", "min – max", "vs cp + sync", "own + kernel threads s", "min – max",
        "vs cp + sync"], busy_rows)}

`zcopy cp` (it chooses) / `cp + sync FILE`: wall {met(wall_auto, 0.8)}, machine busy {met(busy_auto, 0.5)};
own + kernel threads {met(kbusy_auto, 0.5)}.
`zcopy cp --route direct` / `cp + sync FILE`: wall {fmt(ratio(cold, d, cp, "wall_s"))}, machine busy
{fmt(per_round(busy_cold[d], busy_cold[cp]))}; / `copy_file_range + fsync`: wall {fmt(ratio(cold, d, cfr, "wall_s"))}.
`zcopy cp` chose: {_route_counts(chose_cold.get("auto", []))} (starting with no kept rates: the first copy measured
direct, the second the page cache, fdatasync'ed; later rounds chose by them, as a user's next copies would).

A short probe against the whole copy, durable rates (MiB/s, medians): copy_file_range + fsync
{PROBE / MiB / cold[pc].med("wall_s"):.0f} on the first {PROBE >> 20} MiB, {size / MiB / cold[cfr].med("wall_s"):.0f}
on the whole file; direct {PROBE / MiB / cold[pd].med("wall_s"):.0f} on the first {PROBE >> 20} MiB,
{size / MiB / cold[d].med("wall_s"):.0f} on the whole file (through the CLI).

### Warm source (every page cached), plain copy ({max(rounds, 9)} rounds: new page-cache pages vary 5–20× here)
{table(h2, _rows(warmr, "cp"))}

`zcopy cp` chose: {_route_counts(chose_warm.get("auto", []))} (it must not choose direct: O_DIRECT reads the disk
again); wall / `cp`: {met(wall_warm, 1.0)} (no regression).

### Cold whole-file read
{table(h2, _rows(rd, r_old))}

`read_file(into=)` / `readinto` wall {met(ratio(rd, r_new, r_old, "wall_s"), 0.8)}, CPU
{fmt(ratio(rd, r_new, r_old, "cpu_s"))}; into new memory: wall {met(ratio(rd, n_new, n_old, "wall_s"), 0.8)}, CPU
{fmt(ratio(rd, n_new, n_old, "cpu_s"))}.

Queue depth of a cold read (O_DIRECT into one resident buffer, {max(3, rounds - 2)} rounds):
{table(["reader", "wall s", "min – max", "vs read_file"], rs_rows)}

### socket → new file, receiving process CPU including fsync (sender: sendfile from a warm file, CPU 1)
{table(h2, _rows(rx, rw))}

Direct (writes in the receiving thread: the route's choice) / recv_into + write: CPU
{met(ratio(rx, dx, rw, "cpu_s"), 0.6)}; / splice CPU {fmt(ratio(rx, dx, sp, "cpu_s"))}. The same with the writes
overlapped by a helper thread (3 buffers), / the route's choice: wall {fmt(ratio(rx, do, dx, "wall_s"))}, CPU
{fmt(ratio(rx, do, dx, "cpu_s"))} (below 1: the overlap would pay, and routes.direct.STREAM_OVERLAP should turn).
"""
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
