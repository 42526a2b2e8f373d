"""Direct-route benchmark: O_DIRECT against the page-cache ways, on cold data (and a warm-source control).

Four jobs, 1 GiB by default, every contender in one run with the order shuffled per round, medians with min–max:
durable cold copy (zcopy cp vs cp + sync FILE vs copy_file_range + fsync), the same with a warm source (where zcopy cp
must not choose direct), cold whole-file reads (zcopy.read_file vs readinto vs numpy.fromfile), and a receiver
writing a new file from a socket, fsync included (transfer_from by direct vs recv_into + write vs splice).
Usage: python bench/direct.py [--quick] [--size BYTES] [--rounds N] [--out FILE.md]
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import time

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
    run_rounds,
    sh,
    source_file,
    start_peer,
    table,
    thread_cpu,
    timed,
    warm,
    write_report,
)

import zcopy
from zcopy import FileChannel, pagecache
from zcopy.aligned import fs_type


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


def copies(src: str, tmp: str, rounds: int, cold: bool) -> tuple[dict[str, Result], dict[str, str], float]:
    """Durable file → file copies. Returns results, the route `zcopy cp` (auto) chose, worst residency."""
    dst = os.path.join(tmp, "copy")
    zcopy_exe = shutil.which("zcopy") or os.path.join(os.path.dirname(sys.executable), "zcopy")
    chose: dict[str, str] = {}
    prep = Cold(src) if cold else (lambda: (drop_dirty(), warm(src)))

    def then_clean(sample: Sample) -> Sample:
        os.unlink(dst)
        return sample

    def zcopy_cli(*extra: str) -> Sample:
        c0, t0 = _children(), time.perf_counter()
        out = subprocess.run([zcopy_exe, "cp", "--json", *extra, src, dst], check=True, capture_output=True, text=True)
        sample = Sample(time.perf_counter() - t0, _children() - c0)
        doc = json.loads(out.stdout)
        chose[" ".join(extra) or "auto"] = doc["route"]
        return then_clean(sample)

    def cfr_fsync() -> None:
        with FileChannel.open(src) as s, FileChannel.open(dst, "w") as d:
            s.transfer_to(0, s.size(), d, route="copy_file_range")
            d.force()

    contenders = {
        "zcopy cp --route direct (CLI, fsyncs)": lambda: zcopy_cli("--route", "direct"),
        "zcopy cp (CLI, chooses)": lambda: zcopy_cli(),
        "cp + sync FILE": lambda: then_clean(sh(["sh", "-c", 'cp "$0" "$1" && sync "$1"', src, dst])),
        "copy_file_range + fsync": lambda: then_clean(timed(cfr_fsync)),
    }
    results = run_rounds({n: _before(prep, f) for n, f in contenders.items()}, rounds, between=drop_dirty)
    return results, chose, prep.worst if isinstance(prep, Cold) else 1.0


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
        "reused: zcopy.read_file(into=aligned)": lambda: timed(lambda: check(zcopy.read_file(src, into=reused))),
        "reused: readinto the same buffer": lambda: timed(lambda: readinto(reused)),
        "new: zcopy.read_file()": lambda: timed(lambda: check(zcopy.read_file(src))),
        "new: readinto bytearray(size)": lambda: timed(lambda: readinto(bytearray(size))),
    }
    try:
        import numpy

        contenders["new: numpy.fromfile"] = lambda: timed(lambda: numpy.fromfile(src, dtype=numpy.uint8))
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
                c0, t0 = thread_cpu(), time.perf_counter()
                recv(sock, out)  # type: ignore[operator]
                out.force()
                return Sample(time.perf_counter() - t0, thread_cpu() - c0)
        finally:
            sock.close()
            os.unlink(dst)

    def by(route: str | None) -> object:
        def go(sock: socket.socket, out: FileChannel) -> None:
            assert out.transfer_from(sock, 0, size, route=route) == size

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


def main(argv: list[str] | None = None) -> int:
    args, size, rounds = file_bench_args(argv, __doc__, 5)
    with source_file("zcopy-bench-direct-", size) as (tmp, src):
        fd = os.open(src, os.O_RDONLY)
        try:
            fs = fs_type(fd)
        finally:
            os.close(fd)
        cold, chose_cold, worst_copy = copies(src, tmp, rounds, cold=True)
        warmr, chose_warm, _ = copies(src, tmp, rounds, cold=False)
        rd, worst_read = reads(src, size, rounds)
        rx = receive(src, size, rounds, tmp)

    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cmd = command_line("bench/direct.py", argv)
    h2 = ["contender", "CPU s", "min – max", "vs base", "wall s", "min – max", "vs base"]
    d, cp, cfr = "zcopy cp --route direct (CLI, fsyncs)", "cp + sync FILE", "copy_file_range + fsync"
    cpu_cp = _ratio(cold, d, cp, "cpu_s")
    wall_cp = _ratio(cold, d, cp, "wall_s")
    r_new, r_old = "reused: zcopy.read_file(into=aligned)", "reused: readinto the same buffer"
    n_new, n_old = "new: zcopy.read_file()", "new: readinto bytearray(size)"
    dx, rw, sp = "transfer_from(route=\"direct\")", "recv_into + write 1 MiB", "transfer_from (splice)"

    def spread(r: Result) -> float:
        return r.hi("cpu_s") / r.lo("cpu_s") if r.lo("cpu_s") > 0 else float("inf")

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    text = f"""## Direct route: O_DIRECT vs the page cache ({when})

Machine: {machine()}; load average at end {load_average()}; shared with other work (other sessions ran tests
and benchmarks on this VM at the same time). File system of the files: {fs}.
Command: `{cmd}` (file {size / MiB:.0f} MiB, {rounds} rounds, order shuffled per round, medians with min–max).
Process pinned to CPU 0; the socket peer to CPU 1. "Cold": before every contender the source is fsynced and dropped
with posix_fadvise(DONTNEED), then probed with mincore (worst residency seen: copies {worst_copy:.1%}, reads
{worst_read:.1%}). CPU: in-process contenders the thread's user+sys (RUSAGE_THREAD); CLI contenders their children's
(`zcopy cp` includes Python's start-up and imports, `cp + sync` runs under `sh`).

### Cold source, durable copy (data on the disk when it returns)
{table(h2, _rows(cold, cp))}

`zcopy cp --route direct` / `cp + sync FILE`: CPU **{cpu_cp:.2f}×** (target ≤ 0.25×, {met(cpu_cp <= 0.25)}),
wall **{wall_cp:.2f}×** (target ≤ 1.0×, {met(wall_cp <= 1.0)}); / `copy_file_range + fsync`: CPU
{_ratio(cold, d, cfr, "cpu_s"):.2f}×, wall {_ratio(cold, d, cfr, "wall_s"):.2f}×. `zcopy cp` without `--route` chose
**{chose_cold.get("auto", "?")}** for the cold source.

### Warm source (every page cached), durable copy
{table(h2, _rows(warmr, cp))}

`zcopy cp` without `--route` chose **{chose_warm.get("auto", "?")}** for the cached source (it must not choose direct:
O_DIRECT reads the disk again). Forced direct / copy_file_range + fsync here: wall
{_ratio(warmr, d, cfr, "wall_s"):.2f}×.

### Cold whole-file read
{table(h2, _rows(rd, r_old))}

Into a reused buffer: `read_file` / `readinto` CPU **{_ratio(rd, r_new, r_old, "cpu_s"):.2f}×** (target ≤ 0.4×,
{met(_ratio(rd, r_new, r_old, "cpu_s") <= 0.4)}), wall **{_ratio(rd, r_new, r_old, "wall_s"):.2f}×** (target ≤ 1.1×,
{met(_ratio(rd, r_new, r_old, "wall_s") <= 1.1)}). Into new memory (both pay the first touch of every page): CPU
**{_ratio(rd, n_new, n_old, "cpu_s"):.2f}×** (target ≤ 0.6×, {met(_ratio(rd, n_new, n_old, "cpu_s") <= 0.6)}).

### socket → new file, receiver thread CPU including fsync (sender: sendfile from a warm file, CPU 1)
{table(h2, _rows(rx, rw))}

`transfer_from(route="direct")` / recv_into+write: CPU **{_ratio(rx, dx, rw, "cpu_s"):.2f}×** (target ≤ 0.6×,
{met(_ratio(rx, dx, rw, "cpu_s") <= 0.6)}); / splice {_ratio(rx, dx, sp, "cpu_s"):.2f}×. CPU spread (max/min):
direct {spread(rx[dx]):.2f}, recv_into+write {spread(rx[rw]):.2f}, splice {spread(rx[sp]):.2f}.
"""
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
