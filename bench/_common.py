"""Shared benchmark plumbing: machine facts, rounds with shuffled contender order, medians, markdown tables.

Benchmarks are not tests: they print and write docs, never assert timings.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

GiB = 1 << 30
MiB = 1 << 20

# A peer that sendfile()s a (warm) file to each connection, for the socket → file jobs; prints its port first.
SENDFILE_PEER = r"""
import os, socket, sys
path = sys.argv[1]; size = os.path.getsize(path)
srv = socket.create_server(("127.0.0.1", 0)); print(srv.getsockname()[1], flush=True)
fd = os.open(path, os.O_RDONLY)
while True:
    c, _ = srv.accept()
    off = 0
    while off < size:
        off += os.sendfile(c.fileno(), fd, off, size - off)
    c.close()
"""


def pin(cpu: int) -> None:
    """Pin this process to one core (the measured side runs on CPU 0, its peer on CPU 1)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


def on_cpu1() -> list[str]:
    """The command prefix that runs a peer on CPU 1 (nothing on one core or without taskset)."""
    return ["taskset", "-c", "1"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def start_peer(script: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    """Start a Python peer script on CPU 1; it prints the port it listens on as its first line."""
    p = subprocess.Popen([*on_cpu1(), sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, int(p.stdout.readline())


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    return (
        f"{os.cpu_count()} × {cpu}, {mem:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


# Read when a bench script starts (each runs in its own process): what was running before it measured anything.
LOAD_AT_START = load_average()


def other_work(start: str = LOAD_AT_START) -> str:
    """What the load average before the run says about other work on this machine: computed, never assumed."""
    try:
        one = float(start.split()[0])
    except (ValueError, IndexError):
        return "load before the run unknown"
    busy = "other work was running" if one >= 0.5 else "little other work"
    return f"{busy} (1-minute load {one:.2f} on {os.cpu_count() or 1} CPUs when the run started)"


def thread_cpu() -> float:
    """CPU seconds (user + sys) of the calling thread (RUSAGE_THREAD, Linux 2.6.26)."""
    r = resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF))
    return r.ru_utime + r.ru_stime


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass
class Sample:
    wall_s: float
    cpu_s: float


@dataclass
class Result:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def med(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    def lo(self, attr: str) -> float:
        return min(getattr(s, attr) for s in self.samples)

    def hi(self, attr: str) -> float:
        return max(getattr(s, attr) for s in self.samples)


def run_rounds(
    contenders: dict[str, Callable[[], Sample]],
    rounds: int,
    between: Callable[[], None] | None = None,
    seed: int = 1,
) -> dict[str, Result]:
    """Each round runs every contender once in a freshly shuffled order (a copying contender pollutes the cache
    for whoever runs next: ~15% bias measured here, so no one may always go second)."""
    rng = random.Random(seed)
    results = {name: Result(name) for name in contenders}
    names = list(contenders)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            results[name].samples.append(contenders[name]())
            if between is not None:
                between()
    return results


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that reproduces this run, as quoted in docs/benchmarks.md (without --out FILE)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--out" in args:
        i = args.index("--out")
        del args[i : i + 2]
    return shlex.join(["python", script, *args])


def drop_dirty() -> None:
    """Flush dirty pages (untimed) so the next contender does not pay for the previous one's writeback."""
    os.sync()


def warm(path: str) -> None:
    """Read the file once so it sits in the page cache (the benchmarks measure warm-cache transfers)."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 * MiB)
        while f.readinto(buf):
            pass


def make_file(path: str, size: int) -> None:
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(block[:n])
            left -= n


def timed(fn: Callable[[], object]) -> Sample:
    c0, t0 = thread_cpu(), time.perf_counter()
    fn()
    return Sample(time.perf_counter() - t0, thread_cpu() - c0)


def sh(cmd: list[str]) -> Sample:
    """Run a command; wall time and the child's CPU."""
    c0, t0 = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return Sample(time.perf_counter() - t0, children_cpu() - c0)


def file_bench_args(argv: list[str] | None, doc: str | None, full_rounds: int) -> tuple[argparse.Namespace, int, int]:
    """The options of the file benchmarks (bench/core.py, bench/direct.py), then this process pinned to CPU 0 and
    zcopy's bytecode compiled; returns (args, file size, rounds)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help="64 MiB, 3 rounds: proves the script works")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--out", help="write a markdown section here")
    args = ap.parse_args(argv)
    size = args.size or (64 * MiB if args.quick else GiB)
    rounds = args.rounds or (3 if args.quick else full_rounds)
    pin(0)
    # `zcopy cp` is timed as users run it: with its bytecode cached. Compile it now, because an environment with
    # PYTHONDONTWRITEBYTECODE=1 (this one has it) would otherwise recompile every module at every start (~30 ms).
    import compileall

    import zcopy

    compileall.compile_dir(os.path.dirname(zcopy.__file__), quiet=1)
    return args, size, rounds


@contextlib.contextmanager
def source_file(prefix: str, size: int) -> Iterator[tuple[str, str]]:
    """(temp dir, its file "src" of ``size`` random bytes, written back to the disk); the dir is removed after.
    The temp dir is under $ZCOPY_BENCH_DIR when set (to choose the file system)."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("ZCOPY_BENCH_DIR"))
    try:
        src = os.path.join(tmp, "src")
        make_file(src, size)
        os.sync()
        yield tmp, src
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_report(text: str, out: str | None) -> None:
    """Print a benchmark's markdown section, and write it to --out FILE when given (bench/run.py collects those)."""
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
