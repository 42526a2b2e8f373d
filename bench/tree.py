"""Tree-copy benchmark: `zcopy cp -a` against `cp -a`, `rsync -a` and `shutil.copytree`, and `zcopy cp -a --sync`
against `cp -a` + `sync`, on a warm tree of many small files and a few large ones.

The tree (issue #22): 20,000 files of 4 KiB in 100 directories plus 4 files of 256 MiB, read once so it is in the
page cache. Every contender is a command (Python's start-up counts for zcopy and shutil as cp's does for cp); the
destination is removed and dirty pages are flushed before each (untimed). Each round runs every contender once in
a freshly shuffled order; the report gives medians with min–max, the median of per-round ratios with min–max, and
the whole machine's busy CPU time from /proc/stat (the kernel's writeback threads count for everyone).
Usage: python bench/tree.py [--quick] [--rounds N] [--files N] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))
from _common import MiB, Sample, command_line, load_average, machine, run_rounds, table, write_report

from zcopy.tree import THREADS

SHUTIL = "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], symlinks=True)"


def busy_ticks() -> int:
    """All CPUs' non-idle time in clock ticks since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


TICK = os.sysconf("SC_CLK_TCK")


class Measured(Sample):
    """A sample with the whole machine's busy CPU seconds during it."""

    def __init__(self, wall_s: float, cpu_s: float, busy_s: float) -> None:
        super().__init__(wall_s, cpu_s)
        self.busy_s = busy_s


def ensure_rsync() -> str | None:
    """rsync is a peer, not a dependency: installed from Debian here when missing."""
    if shutil.which("rsync") is None:
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "rsync"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)  # fmt: skip
    return shutil.which("rsync")


def build_tree(root: str, files: int, dirs: int, small: int, big: int, bigs: int) -> int:
    """The source tree; returns its size in bytes."""
    block = os.urandom(small)
    per = files // dirs
    for d in range(dirs):
        sub = os.path.join(root, f"d{d:03d}")
        os.makedirs(sub)
        for i in range(per):
            with open(os.path.join(sub, f"f{i:05d}"), "wb") as f:
                f.write(block)
    chunk = os.urandom(MiB)
    for b in range(bigs):
        with open(os.path.join(root, f"big{b}"), "wb") as f:
            for _ in range(big // MiB):
                f.write(chunk)
    return per * dirs * small + bigs * big


def warm_tree(root: str) -> None:
    for dirpath, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(dirpath, n), "rb", buffering=0) as f:
                while f.read(8 * MiB):
                    pass


def runner(cmd: list[str], dst: str) -> Callable[[], Measured]:
    def run() -> Measured:
        shutil.rmtree(dst, ignore_errors=True)
        os.sync()
        r0 = os.times()
        b0, t0 = busy_ticks(), time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        busy = (busy_ticks() - b0) / TICK
        r1 = os.times()
        cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
        return Measured(wall, cpu, busy)

    return run


def strace_summary(path: str) -> tuple[float, list[tuple[str, float, int]]]:
    """(total seconds, [(syscall, seconds, calls)] by time) from `strace -c -w -o path`'s table."""
    rows: list[tuple[str, float, int]] = []
    total = 0.0
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5 or not parts[0][0].isdigit():
                continue
            if parts[-1] == "total":
                total = float(parts[1])
            else:
                rows.append((parts[-1], float(parts[1]), int(parts[3])))
    return total, sorted(rows, key=lambda r: -r[1])


# System calls that wait (for a lock, a pipe, a child) rather than work: counted apart.
WAITS = frozenset({"futex", "pselect6", "select", "poll", "ppoll", "wait4", "epoll_wait", "clock_nanosleep"})


def profile(cmds: dict[str, list[str]], dst: str, tmp: str) -> str:
    """One more run of each contender under `strace -f -c -w` (wall time inside each system call, all threads): where
    the time goes, to explain a target missed. strace slows every call down; the shares are what counts."""
    if shutil.which("strace") is None:
        return "(strace is not installed: no profile)\n"
    rows = []
    for name, cmd in cmds.items():
        shutil.rmtree(dst, ignore_errors=True)
        os.sync()
        out = os.path.join(tmp, "strace.txt")
        t0 = time.perf_counter()
        subprocess.run(["strace", "-f", "-c", "-w", "-o", out, *cmd], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        total, top = strace_summary(out)
        waiting = sum(sec for n, sec, _ in top if n in WAITS)
        work = [r for r in top if r[0] not in WAITS]
        cells = [f"{n}: {sec:.2f} s, {calls:,} calls, {sec / calls * 1e6:.0f} µs each" for n, sec, calls in work[:3]]
        rows.append([name, f"{wall:.2f}", f"{total - waiting:.2f}", f"{waiting:.2f}", *cells])
    head = ["contender (under strace)", "wall s", "in working syscalls s", "waiting s", "1st", "2nd", "3rd"]
    return table(head, rows) + "\n"


def ratios(results: dict[str, list[Measured]], a: str, b: str, attr: str) -> tuple[float, float, float]:
    per = [getattr(x, attr) / getattr(y, attr) for x, y in zip(results[a], results[b], strict=True)]
    return statistics.median(per), min(per), max(per)


def section(title: str, results: dict[str, list[Measured]], base: str) -> str:
    rows = []
    for name, samples in results.items():
        wall = [s.wall_s for s in samples]
        busy = [s.busy_s for s in samples]
        med, lo, hi = ratios(results, name, base, "wall_s")
        bmed, _, _ = ratios(results, name, base, "busy_s")
        rows.append([name, f"{statistics.median(wall):.2f}", f"{min(wall):.2f} – {max(wall):.2f}",
                     f"{med:.2f}× ({lo:.2f} – {hi:.2f})", f"{statistics.median([s.cpu_s for s in samples]):.2f}",
                     f"{statistics.median(busy):.2f}", f"{bmed:.2f}×"])  # fmt: skip
    head = ["contender", "wall s (median)", "min – max", f"wall vs {base}, per round (min – max)",
            "own CPU s", "machine busy s", f"busy vs {base}"]  # fmt: skip
    return f"#### {title}\n\n" + table(head, rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="2,000 small files and 4 × 16 MiB, 3 rounds")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--files", type=int, default=None)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    files = args.files or (2000 if args.quick else 20_000)
    big = (16 if args.quick else 256) * MiB
    dirs = 20 if args.quick else 100
    rsync = ensure_rsync()
    zcopy = [sys.executable, "-m", "zcopy", "cp", "-a"]
    tmp = tempfile.mkdtemp(prefix="zcopy-bench-tree-", dir=os.environ.get("ZCOPY_BENCH_DIR"))
    try:
        src = os.path.join(tmp, "src")
        total = build_tree(src, files, dirs, 4096, big, 4)
        os.sync()
        warm_tree(src)
        dst = os.path.join(tmp, "dst")
        copies: dict[str, list[str]] = {
            "zcopy cp -a": [*zcopy, src, dst],
            # The same with one copying thread: the measure of what the pool of threads (tree.THREADS) gains.
            "zcopy cp -a --threads 1": [*zcopy, "--threads", "1", src, dst],
            "zcopy cp -a --threads 2": [*zcopy, "--threads", "2", src, dst],
            "cp -a": ["cp", "-a", src, dst],
            "shutil.copytree": [sys.executable, "-c", SHUTIL, src, dst],
        }
        if rsync:
            copies["rsync -a"] = [rsync, "-a", src + "/", dst]
        durable: dict[str, list[str]] = {
            "zcopy cp -a --sync": [*zcopy, "--sync", src, dst],
            "cp -a + sync": ["sh", "-c", 'cp -a "$0" "$1" && sync', src, dst],
        }
        load0 = load_average()
        t0 = datetime.datetime.now(datetime.timezone.utc)
        warm = run_rounds({k: runner(v, dst) for k, v in copies.items()}, rounds)
        sync = run_rounds({k: runner(v, dst) for k, v in durable.items()}, rounds, seed=2)
        profiled = profile({k: v for k, v in copies.items() if k in ("zcopy cp -a", "cp -a", "rsync -a")}, dst, tmp)
        shutil.rmtree(dst, ignore_errors=True)
        load1 = load_average()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    w = {k: [s for s in r.samples if isinstance(s, Measured)] for k, r in warm.items()}
    d = {k: [s for s in r.samples if isinstance(s, Measured)] for k, r in sync.items()}
    cp_ratio = ratios(w, "zcopy cp -a", "cp -a", "wall_s")
    lines = [
        "## bench/tree.py: copying a tree (`zcopy cp -a`)",
        "",
        f"Command: `{command_line('bench/tree.py', argv)}`. {t0:%Y-%m-%d %H:%M} UTC, {machine()}; load average "
        f"{load0} before, {load1} after (other engineers' jobs share the machine). Tree: {files:,} × 4 KiB in {dirs} "
        f"directories + 4 × {big >> 20} MiB ({total / MiB:.0f} MiB), warm (in the page cache), on "
        f"{os.environ.get('ZCOPY_BENCH_DIR') or tempfile.gettempdir()}. Each contender is a command, unpinned (zcopy "
        f"copies with {THREADS} threads unless told); the destination is removed and `sync` run before each, "
        f"untimed. {rounds} rounds, order shuffled per round. \"machine busy\" is all CPUs' non-idle time from "
        "/proc/stat during the run.",
        "",
        section("Warm tree", w, "cp -a"),
        f"`zcopy cp -a` / `cp -a` wall: **{cp_ratio[0]:.2f}×** per-round median ({cp_ratio[1]:.2f} – "
        f"{cp_ratio[2]:.2f}), target ≤ 1.0×.",
    ]
    if "rsync -a" in w:
        r = ratios(w, "zcopy cp -a", "rsync -a", "wall_s")
        lines.append(f"`zcopy cp -a` / `rsync -a` wall: **{r[0]:.2f}×** ({r[1]:.2f} – {r[2]:.2f}), target ≤ 0.5×.")
    s = ratios(d, "zcopy cp -a --sync", "cp -a + sync", "wall_s")
    lines += [
        "",
        section("The same tree, durable", d, "cp -a + sync"),
        f"`zcopy cp -a --sync` / `cp -a` + `sync` wall: **{s[0]:.2f}×** ({s[1]:.2f} – {s[2]:.2f}), target ≤ 0.8×.",
        "",
        "#### Where the time goes",
        "",
        "One more run of each under `strace -f -c -w` (time inside each system call, summed over threads), after the "
        "rounds; \"waiting\" is the time in futex (zcopy's threads waiting for the GIL or each other), pselect6 "
        "(rsync's processes waiting for each other's pipe) and the like:",
        "",
        profiled,
    ]
    write_report("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
