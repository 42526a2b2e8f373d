"""zcopy bench: scenarios × sizes × routes, each repeated in a per-round shuffled order, reported as medians.

Owns the scenario table, the sampling loop (one observe() block per sample) and the bench JSON document;
tables come from render.bench_tables, plots from report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zcopy
from zcopy import FileChannel, SocketChannel, observe
from zcopy.errors import RouteUnavailable
from zcopy.lab import render
from zcopy.lab.peer import Peer
from zcopy.lab.schema import BENCH_VERSION
from zcopy.lab.stats import GiB, KiB, MiB, inner_iterations, log_sizes, shuffled_rounds, summarize
from zcopy.lab.tour import machine, sample_block


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    routes: tuple[str, ...]


SCENARIOS: dict[str, Scenario] = {
    s.id: s
    for s in (
        Scenario("file-socket", "file → loopback socket (receiver discards)",
                 ("sendfile", "splice", "mmap", "readwrite")),
        Scenario("socket-file", "loopback socket → file", ("splice", "direct", "readwrite")),
        # direct reads the disk even here, where the source is cached: the sweep shows what that costs.
        Scenario("file-file", "file → file (same filesystem)",
                 ("copy_file_range", "sendfile", "splice", "mmap", "direct", "readwrite")),
    )
}  # fmt: skip


@dataclass
class BenchOptions:
    scenarios: Sequence[str] = tuple(SCENARIOS)
    routes: Sequence[str] | None = None  # None: each scenario's own list
    min_size: int = 4 * KiB
    max_size: int = 1 * GiB
    factor: int = 4
    repeats: int = 3
    sample_bytes: int = 64 * MiB  # per sample, see stats.inner_iterations
    seed: int = 0
    workdir: Path | None = None
    # progress(bytes_done, bytes_planned, label): the CLI draws it (zcopy.cli.progress); None = silent.
    progress: Callable[[int, int, str], None] | None = None
    sizes: list[int] = field(default_factory=list)

    def size_grid(self) -> list[int]:
        return self.sizes or log_sizes(self.min_size, self.max_size, self.factor)


@dataclass
class _Cell:
    """Samples of one (scenario, size, route)."""

    route_used: set[str] = field(default_factory=set)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    user_bytes: int = 0
    syscalls: int = 0
    error: str | None = None


Mover = Callable[[int, str], int]  # (count, route) -> bytes moved; one transfer


def _fill(path: Path, size: int) -> None:
    block = sample_block()
    with FileChannel.open(path, "w") as ch:
        done = 0
        while done < size:
            done += ch.write(block[: min(len(block), size - done)])


def _warm(path: Path) -> None:
    with FileChannel.open(path, "r") as ch:
        pos, size = 0, ch.size()
        buf = bytearray(1 << 20)
        while pos < size:
            pos += ch.readinto(buf, position=pos) or size


class _Session:
    """The open endpoints of one scenario; `move` performs one transfer of `count` bytes by `route`."""

    def __init__(self, scen: Scenario, src: Path, tmp: Path, plan_bytes: int) -> None:
        self.scen = scen
        self.src_path = src
        self.src = FileChannel.open(src, "r")
        self.peer: Peer | None = None
        self.sock: SocketChannel | None = None
        self.dst: FileChannel | None = None
        self.sent = 0
        if scen.id == "file-socket":
            self.peer = Peer("sink")
        elif scen.id == "socket-file":
            self.peer = Peer("source", str(src), str(plan_bytes))
        if self.peer is not None:
            assert self.peer.address is not None
            self.sock = SocketChannel.open(self.peer.address)
        if scen.id in ("socket-file", "file-file"):
            self.dst = FileChannel.open(tmp / "dest", "w+")

    def move(self, count: int, route: str) -> tuple[int, str]:
        if self.scen.id == "file-socket":
            assert self.sock is not None
            n = self.src.transfer_to(0, count, self.sock, route=route, fallback=False)
            used = self.src.last_route
        elif self.scen.id == "socket-file":
            assert self.dst is not None and self.sock is not None
            n = self.dst.transfer_from(self.sock, 0, count, route=route, fallback=False)
            used = self.dst.last_route
        else:
            assert self.dst is not None
            self.dst.position = 0  # overwrite in place: the destination must not grow by the whole plan
            n = self.src.transfer_to(0, count, self.dst, route=route, fallback=False)
            used = self.src.last_route
        self.sent += n
        return n, used or route

    def close(self) -> int:
        """Close everything; returns what the peer reports it moved (-1 without a peer)."""
        self.src.close()
        if self.dst is not None:
            self.dst.close()
        if self.sock is not None:
            self.sock.close()
        moved = -1
        if self.peer is not None:
            with self.peer:
                moved = self.peer.finish()
        return moved


def _plan(opts: BenchOptions, scen: Scenario) -> Iterator[tuple[int, int, list[str]]]:
    """(size, iterations, route order) for every round, rounds shuffled independently per size."""
    routes = [r for r in scen.routes if opts.routes is None or r in opts.routes]
    for k, size in enumerate(opts.size_grid()):
        iters = inner_iterations(size, opts.sample_bytes)
        for order in shuffled_rounds(routes, opts.repeats, opts.seed * 1000 + k):
            yield size, iters, order


def run_bench(opts: BenchOptions, argv: Sequence[str] = ()) -> dict[str, Any]:
    """Run the plan and return the bench document (schema zcopy.bench/1)."""
    sizes = opts.size_grid()
    scens = [SCENARIOS[s] for s in opts.scenarios]
    plans = {s.id: list(_plan(opts, s)) for s in scens}
    total = sum(size * iters * len(order) for p in plans.values() for size, iters, order in p)
    done = 0
    tmp = Path(tempfile.mkdtemp(prefix="zcopy-bench-", dir=opts.workdir))
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        src = tmp / "source"
        _fill(src, max(sizes))
        _warm(src)
        for scen in scens:
            plan = plans[scen.id]
            plan_bytes = sum(size * iters for size, iters, order in plan for _ in order)
            cells: dict[tuple[int, str], _Cell] = {}
            session = _Session(scen, src, tmp, plan_bytes)
            try:
                for size, iters, order in plan:
                    for route in order:
                        if opts.progress is not None:
                            opts.progress(done, total, f"{scen.id} {render.fmt_bytes(size)} {route}")
                        done += size * iters
                        cell = cells.setdefault((size, route), _Cell())
                        if cell.error is not None:
                            if scen.id == "socket-file":  # keep the byte stream in step with the plan
                                for _ in range(iters):
                                    session.move(size, "readwrite")
                            continue
                        try:
                            with observe() as obs:
                                for _ in range(iters):
                                    _, used = session.move(size, route)
                        except RouteUnavailable as exc:
                            cell.error = exc.reason
                            if scen.id == "socket-file":
                                for _ in range(iters):
                                    session.move(size, "readwrite")
                            continue
                        t = obs.totals
                        cell.route_used.add(used)
                        cell.wall.append(t.wall_s / iters)
                        cell.cpu.append((t.usage.cpu_user_s + t.usage.cpu_sys_s) / iters)
                        cell.user_bytes = t.user_bytes // iters
                        cell.syscalls = t.syscall_count // iters
            finally:
                moved = session.close()
            if scen.id == "file-socket" and moved != session.sent:
                raise RuntimeError(f"the sink received {moved} bytes, {session.sent} were sent")
            for (size, route), cell in cells.items():
                if cell.error is not None:
                    notes.append(f"{scen.id} {route} {render.fmt_bytes(size)}: unavailable ({cell.error})")
                    continue
                results.append(_result(scen.id, route, size, plans, cell))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "schema": BENCH_VERSION,
        "zcopy_version": zcopy.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "command": "zcopy bench " + " ".join(argv),
        "loadavg": list(os.getloadavg()),
        "repeats": opts.repeats,
        "scenarios": [{"id": s.id, "title": s.title, "routes": list(s.routes)} for s in scens],
        "sizes": sizes,
        "results": results,
        "notes": sorted(set(notes)),
    }


def _result(scen: str, route: str, size: int, plans: dict[str, Any], cell: _Cell) -> dict[str, Any]:
    iters = next(it for s, it, _ in plans[scen] if s == size)
    wall = summarize(cell.wall)
    cpu = summarize(cell.cpu)
    # Throughput from each sample's wall time, so min/max are real samples (fastest = max MiB/s).
    rates = summarize([size / w / MiB for w in cell.wall if w > 0] or [0.0])
    per_gib = summarize([c / size * GiB for c in cell.cpu])
    return {
        "scenario": scen,
        "route": route,
        "route_used": ",".join(sorted(cell.route_used)) or route,
        "size": size,
        "iterations": iters,
        "wall_s": wall.as_dict(),
        "cpu_s": cpu.as_dict(),
        "mib_per_s": rates.as_dict(),
        "cpu_s_per_gib": per_gib.as_dict(),
        "user_bytes": cell.user_bytes,
        "syscall_count": cell.syscalls,
    }
