"""zcopy serve against nginx, aiohttp add_static and python -m http.server: server CPU per request / per GB.

Server pinned to CPU0, wrk to CPU1, warm page cache; server CPU is read from /proc/<pid>/stat (utime+stime,
all threads) before and after each wrk run. Contender order is shuffled per round; medians with min/max.
Also RSS with 1,000 idle keep-alive connections. Installs wrk and nginx with apt-get when missing (root).
Usage: .venv/bin/python bench/serve.py [--quick] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from _common import (  # bench/ is sys.path[0] when run as a script
    LOAD_AT_START,
    load_average,
    machine,
    make_file,
    other_work,
    table,
    warm,
    write_report,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL, BIG = 4 << 10, 256 << 20
SMALL_KEEPALIVE = b"GET /small.bin HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

AIOHTTP_APP = """
import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/", sys.argv[1])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
"""

NGINX_CONF = """
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
    sendfile on;
    tcp_nopush on;
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


def ensure_tools() -> list[str]:
    """apt-get install wrk/nginx when missing; returns notes about what could not be had."""
    missing = [
        p
        for p, exe in (("wrk", "wrk"), ("nginx", "nginx"))
        if shutil.which(exe) is None and not os.path.exists(f"/usr/sbin/{exe}")
    ]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=False, capture_output=True)
    return [p for p in ("wrk", "nginx") if shutil.which(p) is None and not os.path.exists(f"/usr/sbin/{p}")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def cpu_seconds(pid: int) -> float:
    return _cpu_ticks(pid) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, as far as /proc still lists them."""
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out += proc_tree(int(child))
    except OSError:
        pass
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and all its descendants."""
    total = 0
    for p in proc_tree(pid):
        with contextlib.suppress(OSError):
            total += _cpu_ticks(p)
    return total / CLK_TCK


def tree_rss_kib(pid: int) -> int:
    total = 0
    for p in proc_tree(pid):
        with contextlib.suppress(OSError):
            total += rss_kib(p)
    return total


@dataclass
class Contender:
    name: str
    argv: list[str]
    tmp: str
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    tree: bool = False  # count the server's child processes too (granian runs its worker in one)

    def start(self, port: int) -> None:
        self.port = port
        argv = [a.replace("{port}", str(port)).replace("{tmp}", self.tmp) for a in self.argv]
        errfd = self._errlog()
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", *argv],
            stdout=subprocess.DEVNULL,
            stderr=errfd,
        )
        os.close(errfd)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up (see {self.tmp}/{self.name}.err)")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port}")

    def _errlog(self) -> int:
        # An fd the child inherits for its stderr; ours is closed right after Popen has duplicated it.
        return os.open(os.path.join(self.tmp, f"{self.name}.err"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return tree_cpu(self.pid) if self.tree else cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return tree_rss_kib(self.pid) if self.tree else rss_kib(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


_REQS = re.compile(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)([KMGT]?B) read")
_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}  # wrk prints binary units
_ERRS = re.compile(
    r"Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)


def wrk(port: int, path: str, conns: int, seconds: float) -> tuple[int, float, float, str]:
    """Run wrk on CPU1; returns (requests, wall seconds, bytes read, error summary).

    Bytes read (not requests × size) is what counts for big files: a short run ends with up to one response
    per connection half-sent, whose CPU the server has already spent.
    """
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = _REQS.search(out)
    if m is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    unit = {"ms": 1e-3, "s": 1.0, "m": 60.0}.get(m.group(3), 1.0)
    errors = "; ".join(x.group(0) for x in _ERRS.finditer(out))
    return int(m.group(1)), float(m.group(2)) * unit, float(m.group(4)) * _UNITS[m.group(5)], errors


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)
    notes: set[str] = field(default_factory=set)

    def fmt(self, scale: float = 1.0, digits: int = 1) -> str:
        if not self.values:
            return "—"
        v = [x * scale for x in self.values]
        med = statistics.median(v)
        return f"{med:.{digits}f}" if len(v) == 1 else f"{med:.{digits}f} ({min(v):.{digits}f}–{max(v):.{digits}f})"


def measure(
    c: Contender, path: str, conns: int, seconds: float, per_gb: bool, cell: Cell, rate: Cell,
    partial_bytes: int | None = None,
) -> None:  # fmt: skip
    """One wrk run (after a 1 s warm-up) into ``cell`` (server CPU µs per request, or CPU s per GB read by wrk)
    and ``rate`` (requests/s, or GB/s). A run that completed no response is dropped, unless wrk read at least
    ``partial_bytes`` (then its half-sent responses are counted by their bytes)."""
    wrk(c.port, path, conns, 1.0)  # warm-up: caches, connection set-up, JIT-free but lazy imports
    cpu0 = c.cpu_seconds()
    reqs, wall, nbytes, errors = wrk(c.port, path, conns, seconds)
    cpu = c.cpu_seconds() - cpu0
    if errors:
        cell.notes.add(errors)
    if reqs == 0 and (partial_bytes is None or nbytes < partial_bytes):
        return
    if per_gb:
        gb = nbytes / 1e9
        cell.values.append(cpu / gb)  # CPU s per GB
        rate.values.append(gb / wall)
    else:
        cell.values.append(cpu / reqs * 1e6)  # µs per request
        rate.values.append(reqs / wall)


def idle_rss_mib(c: Contender, n: int, request: bytes) -> float:
    """Server RSS (MiB) after opening ``n`` keep-alive connections that each sent ``request`` once."""
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
            s.sendall(request)
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            socks.append(s)
        time.sleep(0.5)
        return c.rss_kib() / 1024
    finally:
        for s in socks:
            s.close()


def parse_args(
    argv: Sequence[str] | None, doc: str | None, quick_help: str, only_help: str, full_seconds: float
) -> tuple[argparse.Namespace, int, float, list[int]]:
    """The options both server benchmarks take; returns (args, rounds, seconds per wrk run, connection counts)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--out", help="write a markdown section to this file")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--only", help=only_help)
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else full_seconds)
    return args, rounds, seconds, [32] if args.quick else [1, 32, 256]


@dataclass
class Measure:
    """One cell of a side-by-side run: the same wrk load on each server in ``who`` (keys of the running servers),
    into ``cells``/``rates`` (keyed the same way); ``rounds`` gets each round's values, for paired ratios."""

    path: str
    conns: int
    per_gb: bool
    who: list[str]
    cells: dict[str, Cell]
    rates: dict[str, Cell]
    partial_bytes: int | None = None
    rounds: list[dict[str, float]] = field(default_factory=list)


def side_by_side(plan: Sequence[Measure], running: dict[str, Contender], rounds: int, seconds: float) -> None:
    """Run every measurement of ``plan`` on its servers back to back, in a fresh shuffled order each round (seed 1,
    so reruns match). All servers run for the whole benchmark (pinned to CPU0; an idle one costs nothing): this
    VM has slow spells of tens of seconds, and measuring one server's whole battery before the next let a spell
    land on one contender only. Says on stderr when a round is over."""
    rng = random.Random(1)
    for rnd in range(rounds):
        for m in plan:
            order = list(m.who)
            rng.shuffle(order)
            got: dict[str, float] = {}
            for key in order:
                cell = m.cells[key]
                before = len(cell.values)
                measure(running[key], m.path, m.conns, seconds, m.per_gb, cell, m.rates[key], m.partial_bytes)
                if len(cell.values) > before:
                    got[key] = cell.values[-1]
            m.rounds.append(got)
        print(f"round {rnd + 1}/{rounds} done", file=sys.stderr, flush=True)


@contextlib.contextmanager
def all_running(
    servers: dict[str, tuple[str, list[str]]], tmp: str, tree: bool = False
) -> Iterator[dict[str, Contender]]:
    """Start every server of ``servers`` (key → (name for its log, argv)) on a free port, each pinned to CPU0, for a
    side-by-side run; stop them all when the block ends. nginx gets its config written for its port."""
    running: dict[str, Contender] = {}
    try:
        for key, (name, argv) in servers.items():
            port = free_port()
            if any("nginx.conf.{port}" in a for a in argv):
                nginx_conf_for(tmp, port)
            running[key] = Contender(name, argv, tmp, tree=tree)
            running[key].start(port)
        yield running
    finally:
        for c in running.values():
            c.stop()


def paired(m: Measure | None, a: str, b: str) -> str:
    """The median (min–max) over the rounds of a/b, each round's two values measured back to back."""
    ratios = [r[a] / r[b] for r in (m.rounds if m is not None else []) if a in r and b in r]
    if not ratios:
        return "—"
    spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
    return f"{statistics.median(ratios):.2f}×{spread}"


def of_medians(x: Cell | None, y: Cell | None) -> str:
    """The ratio of two cells' medians (shown beside the paired ratio)."""
    if x is None or y is None or not x.values or not y.values:
        return "—"
    return f"{statistics.median(x.values) / statistics.median(y.values):.2f}×"


def start_bench(script: str) -> list[str] | None:
    """Raise the fd limit (1,000 idle connections) and install wrk/nginx; None (after saying so) without wrk,
    else the tools still missing."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    missing = ensure_tools()
    if "wrk" in missing:
        print(f"{script}: wrk is not available (apt-get failed); nothing measured", file=sys.stderr)
        return None
    return missing


def serve_tree(prefix: str) -> tuple[str, str]:
    """A temp dir with root/ holding the 4 KiB and 256 MiB files (warm), nginx's temp dirs and its nginx.conf
    (port still to fill in, see nginx_conf_for); returns (tmp, root)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    for d in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(tmp, d))
    make_file(os.path.join(root, "small.bin"), SMALL)
    make_file(os.path.join(root, "big.bin"), BIG)
    warm(os.path.join(root, "small.bin"))
    warm(os.path.join(root, "big.bin"))
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port="{port}", root=root))
    return tmp, root


def nginx_conf_for(tmp: str, port: int) -> None:
    """Write {tmp}/nginx.conf.{port}: nginx reads its port from the config file."""
    with open(os.path.join(tmp, "nginx.conf")) as f:
        conf = f.read().replace("{port}", str(port))
    with open(os.path.join(tmp, f"nginx.conf.{port}"), "w") as f:
        f.write(conf)


def run_lines(script: str, argv: Sequence[str] | None, load_note: str = "") -> list[str]:
    """The markdown lines with the date, machine, load average (then ``load_note``) and the command of this run
    (without --out FILE)."""
    given = list(argv if argv is not None else sys.argv[1:])
    shown = [a for k, a in enumerate(given) if a != "--out" and (k == 0 or given[k - 1] != "--out")]
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; machine: {machine()}; "
        f"load average at start: {LOAD_AT_START}, at end: {load_average()}; {other_work()}{load_note}",
        f"- command: `{' '.join([os.path.relpath(sys.executable, REPO), script, *shown])}`",
    ]


def finish(md: list[str], notes: list[str], out: str | None, tmp: str) -> None:
    """Print the markdown (what wrk reported last), write it to --out FILE when given, remove the temp dir."""
    if notes:
        md = [*md, "wrk reported: " + "; ".join(notes), ""]
    write_report("\n".join(md), out)
    shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args, rounds, seconds, conn_levels = parse_args(
        argv, __doc__, "1 round, short runs: proves the script works", "comma-separated contender names", 10.0
    )
    idle_n = 1000
    missing = start_bench("bench/serve")
    if missing is None:
        return 1
    py = sys.executable
    tmp, root = serve_tree("zcopy-bench-serve-")
    with open(os.path.join(tmp, "aiohttp_app.py"), "w") as f:
        f.write(AIOHTTP_APP)
    zc = [py, "-m", "zcopy", "serve", root, "--port", "{port}", "--quiet", "--max-connections", "100000"]
    contenders = {
        "zcopy serve (uvloop)": [*zc, "--loop", "uvloop"],
        "zcopy serve (asyncio)": [*zc, "--loop", "asyncio"],
        "zcopy serve (uvloop) no file cache": [*zc, "--loop", "uvloop", "--cache-entries", "0"],
        "nginx": ["nginx", "-c", "{tmp}/nginx.conf.{port}"],
        "aiohttp add_static": [py, os.path.join(tmp, "aiohttp_app.py"), root, "{port}"],
        "python -m http.server": [py, "-m", "http.server", "{port}", "--bind", "127.0.0.1", "-d", root],
    }
    if "nginx" in missing:
        del contenders["nginx"]
    if args.only:
        keep = set(args.only.split(","))
        contenders = {k: v for k, v in contenders.items() if k in keep}
    small = {(n, c): Cell() for n in contenders for c in conn_levels}
    small_rate = {(n, c): Cell() for n in contenders for c in conn_levels}
    big, big_rate, rss = ({n: Cell() for n in contenders} for _ in range(3))
    plan = [
        *[Measure("/small.bin", c, False, list(contenders), {n: small[n, c] for n in contenders},
                  {n: small_rate[n, c] for n in contenders}) for c in conn_levels],
        Measure("/big.bin", 4, True, list(contenders), big, big_rate, partial_bytes=BIG),
    ]  # fmt: skip
    with all_running({name: (name.split()[0], argv_) for name, argv_ in contenders.items()}, tmp) as running:
        side_by_side(plan, running, rounds, seconds)
        for name in contenders:
            rss[name].values.append(idle_rss_mib(running[name], idle_n, SMALL_KEEPALIVE))
    rows = []
    for name in contenders:
        row = [name]
        for conns in conn_levels:
            row.append(small[(name, conns)].fmt())
        row += [
            small_rate[(name, 32)].fmt(digits=0),
            big[name].fmt(digits=3),
            big_rate[name].fmt(digits=2),
            rss[name].fmt(digits=1),
        ]
        rows.append(row)
    headers = [
        "server",
        *[f"4 KiB: CPU µs/req @{c} conns" for c in conn_levels],
        "4 KiB req/s @32",
        "256 MiB: CPU s/GB @4",
        "256 MiB: GB/s",
        f"RSS MiB, {idle_n} idle conns",
    ]
    notes = sorted(
        {f"{name}: {note}" for (name, _), cell in small.items() for note in cell.notes}
        | {f"{name}: {note}" for name, cell in big.items() for note in cell.notes}
    )
    md = [
        f"## zcopy serve vs peers ({'quick' if args.quick else 'full'} run)",
        "",
        *run_lines("bench/serve.py", argv),
        f"- {rounds} round(s) × {seconds:g} s per wrk run (+1 s warm-up); all servers run at once and each "
        "measurement takes them back to back in a shuffled order (side by side); server on CPU0, wrk -t1 on CPU1, "
        "warm page cache; server CPU from /proc/<pid>/stat deltas; medians (min–max).",
        "- nginx: 1 process (master_process off), sendfile on, tcp_nopush on, access_log off. "
        "http.server speaks HTTP/1.0, so wrk reconnects for every request.",
        "",
        table(headers, rows),
        "",
    ]
    md += _targets(plan, small, big)
    finish(md, notes, args.out, tmp)
    return 0


def _targets(plan: list[Measure], small: dict[tuple[str, int], Cell], big: dict[str, Cell]) -> list[str]:
    """The issue's targets (zcopy on uvloop, the fastest loop): the median of the per-round ratios (servers measured
    back to back), then the ratio of the medians in brackets."""
    zc, ng, ah = "zcopy serve (uvloop)", "nginx", "aiohttp add_static"
    at32 = next((m for m in plan if m.path == "/small.bin" and m.conns == 32), None)
    gb = next((m for m in plan if m.per_gb), None)
    return [
        "Targets, as the median of per-round ratios (min–max); the ratio of the medians above in brackets:",
        "",
        f"- 4 KiB, CPU per request @32: zcopy / nginx = **{paired(at32, zc, ng)}** "
        f"[{of_medians(small.get((zc, 32)), small.get((ng, 32)))}] (target ≤ 2×); aiohttp / zcopy = "
        f"**{paired(at32, ah, zc)}** [{of_medians(small.get((ah, 32)), small.get((zc, 32)))}] (target ≥ 10×)",
        f"- 256 MiB, CPU per GB: zcopy / nginx = **{paired(gb, zc, ng)}** [{of_medians(big.get(zc), big.get(ng))}] "
        "(target ≤ 1.1×)",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
