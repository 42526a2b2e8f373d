"""The same Starlette app under `zcopy serve --app` (uvloop), uvicorn (uvloop + httptools) and granian (ASGI).

Routes: a JSON response, FileResponse of a 4 KiB and of a 256 MiB file; a FastAPI JSON row; nginx serving the two
files statically for reference. Server pinned to CPU0, wrk to CPU1; server CPU (the whole process tree: granian
runs its worker in a child process) from /proc/<pid>/stat before and after each wrk run; ≥ 3 rounds with the
contender order shuffled per round; medians (min–max). Also RSS with 1,000 idle keep-alive connections.
uvicorn and granian are installed by this script into a separate venv (.bench-asgi-venv, never the project's),
with the same Starlette/FastAPI versions as the project venv that runs zcopy.
Usage: .venv/bin/python bench/asgi.py [--quick] [--out FILE.md] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from _common import load_average, machine, make_file, table, warm  # bench/ is sys.path[0] when run as a script
from serve import CLK_TCK, NGINX_CONF, Cell, Contender, ensure_tools, free_port, wrk

SMALL, BIG = 4 << 10, 256 << 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_VENV = os.path.join(REPO, ".bench-asgi-venv")
PEERS = ["uvicorn", "uvloop", "httptools", "granian"]

APP = '''
import os
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "root")


async def json_view(request):
    return JSONResponse({"hello": "world", "items": [1, 2, 3]})


async def small(request):
    return FileResponse(os.path.join(ROOT, "small.bin"))


async def big(request):
    return FileResponse(os.path.join(ROOT, "big.bin"))


SMALL_STAT = os.stat(os.path.join(ROOT, "small.bin"))


async def small_nostat(request):
    # The same response without Starlette's os.stat in a worker thread (the app's own cost, not the server's).
    return FileResponse(os.path.join(ROOT, "small.bin"), stat_result=SMALL_STAT)


routes = [Route("/json", json_view), Route("/small.bin", small), Route("/big.bin", big),
          Route("/small-nostat", small_nostat)]
starlette_app = Starlette(routes=routes)
SMALL_PATH = os.path.join(ROOT, "small.bin").encode()
HEAD = [(b"content-type", b"application/octet-stream"), (b"content-length", b"4096")]


async def app(scope, receive, send):
    # /small-raw: the least an app can do for a file: pathsend straight away (the server's own cost).
    if scope["type"] == "http" and scope["path"] == "/small-raw":
        await send({"type": "http.response.start", "status": 200, "headers": HEAD})
        if "http.response.pathsend" in scope.get("extensions", {}):
            await send({"type": "http.response.pathsend", "path": SMALL_PATH.decode()})
        else:
            with open(SMALL_PATH, "rb") as f:
                await send({"type": "http.response.body", "body": f.read()})
        return
    await starlette_app(scope, receive, send)

fastapi_app = FastAPI()


@fastapi_app.get("/json")
async def fastapi_json():
    return {"hello": "world", "items": [1, 2, 3]}
'''


def peer_venv() -> tuple[str, dict[str, str]]:
    """Create/refresh the peers' venv; returns (its bin dir, versions of what matters)."""
    want = [*PEERS, f"starlette=={importlib.metadata.version('starlette')}",
            f"fastapi=={importlib.metadata.version('fastapi')}"]  # fmt: skip
    py = os.path.join(PEER_VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", PEER_VENV], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *want], check=True)
    out = subprocess.run(
        [py, "-c", "import importlib.metadata as m; print(' '.join(f'{p}={m.version(p)}' for p in "
         "('uvicorn', 'granian', 'uvloop', 'httptools', 'starlette', 'fastapi')))"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    versions = dict(x.split("=", 1) for x in out)
    versions["zcopy uvloop"] = importlib.metadata.version("uvloop")
    return os.path.join(PEER_VENV, "bin"), versions


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out += _tree(int(child))
    except OSError:
        pass
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and all its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK_TCK


def tree_rss_kib(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def measure(c: Contender, path: str, conns: int, seconds: float, per_gb: bool, cell: Cell, rate: Cell) -> None:
    wrk(c.port, path, conns, 1.0)  # warm-up: connections, lazy imports, caches
    cpu0 = tree_cpu(c.pid)
    reqs, wall, nbytes, errors = wrk(c.port, path, conns, seconds)
    cpu = tree_cpu(c.pid) - cpu0
    if errors:
        cell.notes.add(errors)
    if reqs == 0:
        return
    if per_gb:
        cell.values.append(cpu / (nbytes / 1e9))  # CPU s per GB read by wrk
        rate.values.append(nbytes / 1e9 / wall)
    else:
        cell.values.append(cpu / reqs * 1e6)  # µs per request
        rate.values.append(reqs / wall)


def idle_rss(c: Contender, path: str, n: int) -> float:
    """Server RSS (MiB, process tree) with ``n`` keep-alive connections that each made one request."""
    socks = []
    req = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
            s.sendall(req)
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            socks.append(s)
        time.sleep(0.5)
        return tree_rss_kib(c.pid) / 1024
    finally:
        for s in socks:
            s.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="1 round, short runs, 32 connections: proves it works")
    ap.add_argument("--out", help="write a markdown section to this file")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--only", help="comma-separated contender names (zcopy, uvicorn, granian, nginx)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    levels = [32] if args.quick else [1, 32, 256]
    idle_n = 1000
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    missing = ensure_tools()
    if "wrk" in missing:
        print("bench/asgi: wrk is not available (apt-get failed); nothing measured", file=sys.stderr)
        return 1
    peer_bin, versions = peer_venv()
    tmp = tempfile.mkdtemp(prefix="zcopy-bench-asgi-")
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    for d in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(tmp, d))
    make_file(os.path.join(root, "small.bin"), SMALL)
    make_file(os.path.join(root, "big.bin"), BIG)
    warm(os.path.join(root, "small.bin"))
    warm(os.path.join(root, "big.bin"))
    with open(os.path.join(tmp, "benchapp.py"), "w") as f:
        f.write(APP)
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port="{port}", root=root))

    def servers(app: str) -> dict[str, list[str]]:
        return {
            "zcopy": [sys.executable, "-m", "zcopy", "serve", "--app", app, "--app-dir", tmp, "--port", "{port}",
                      "--loop", "uvloop", "--quiet", "--max-connections", "100000"],
            "uvicorn": [os.path.join(peer_bin, "uvicorn"), app, "--app-dir", tmp, "--port", "{port}",
                        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
            "granian": [os.path.join(peer_bin, "granian"), "--interface", "asgi", "--working-dir", tmp,
                        "--host", "127.0.0.1", "--port", "{port}", "--loop", "uvloop", "--workers", "1",
                        "--no-ws", "--log-level", "warning", app],
        }  # fmt: skip

    labels = {
        "zcopy": "zcopy serve --app (uvloop)",
        "uvicorn": "uvicorn (uvloop + httptools)",
        "granian": "granian (ASGI, uvloop)",
        "nginx": "nginx static (reference)",
    }
    names = ["zcopy", "uvicorn", "granian", "nginx"]
    if "nginx" in missing:
        names.remove("nginx")
    if args.only:
        names = [n for n in names if n in set(args.only.split(","))]
    routes = [("json", "/json", False), ("small", "/small.bin", False)]
    cells = {(n, r, c): Cell() for n in names for r, _, _ in routes for c in levels}
    rates = {(n, r, c): Cell() for n in names for r, _, _ in routes for c in levels}
    big = {n: Cell() for n in names}
    big_rate = {n: Cell() for n in names}
    parts = {(n, r): Cell() for n in names for r in ("small-nostat", "small-raw")}
    parts_rate = {(n, r): Cell() for n in names for r in ("small-nostat", "small-raw")}
    fastapi = {n: Cell() for n in names}
    fastapi_rate = {n: Cell() for n in names}
    rss = {n: Cell() for n in names}
    rng = random.Random(1)
    order = list(names)
    for rnd in range(rounds):
        rng.shuffle(order)
        for name in order:
            for app in ("benchapp:app", "benchapp:fastapi_app"):
                if name == "nginx" and app != "benchapp:app":
                    continue
                port = free_port()
                if name == "nginx":
                    with open(os.path.join(tmp, "nginx.conf")) as f:
                        conf = f.read().replace("{port}", str(port))
                    with open(os.path.join(tmp, f"nginx.conf.{port}"), "w") as f:
                        f.write(conf)
                    argv_ = ["nginx", "-c", "{tmp}/nginx.conf.{port}"]
                else:
                    argv_ = servers(app)[name]
                c = Contender(name, argv_, tmp)
                c.start(port)
                try:
                    if app.endswith("fastapi_app"):
                        measure(c, "/json", 32, seconds, False, fastapi[name], fastapi_rate[name])
                        continue
                    for route, path, _ in routes:
                        if name == "nginx" and route == "json":
                            continue
                        for conns in levels:
                            key = (name, route, conns)
                            measure(c, path, conns, seconds, False, cells[key], rates[key])
                    measure(c, "/big.bin", 4, seconds, True, big[name], big_rate[name])
                    if name != "nginx":
                        for r in ("small-nostat", "small-raw"):
                            measure(c, "/" + r, 32, seconds, False, parts[name, r], parts_rate[name, r])
                    if rnd == 0:
                        rss[name].values.append(idle_rss(c, "/small.bin", idle_n))
                finally:
                    c.stop()
            print(f"round {rnd + 1}/{rounds}: {name} done", file=sys.stderr, flush=True)
    given = list(argv if argv is not None else sys.argv[1:])
    shown = [a for k, a in enumerate(given) if a != "--out" and (k == 0 or given[k - 1] != "--out")]
    rows = []
    for n in names:
        row = [labels[n]]
        row += [cells[n, "json", c].fmt() for c in levels]
        row += [cells[n, "small", c].fmt() for c in levels]
        row += [big[n].fmt(digits=3), big_rate[n].fmt(digits=2), fastapi[n].fmt(), rss[n].fmt()]
        rows.append(row)
    headers = [
        "server",
        *[f"JSON µs CPU/req @{c}" for c in levels],
        *[f"FileResponse 4 KiB µs CPU/req @{c}" for c in levels],
        "FileResponse 256 MiB CPU s/GB @4",
        "256 MiB GB/s",
        "FastAPI JSON µs CPU/req @32",
        f"RSS MiB, {idle_n} idle conns",
    ]
    rate_rows = []
    for n in names:
        rate_rows.append([labels[n], rates[n, "json", 32].fmt(digits=0), rates[n, "small", 32].fmt(digits=0),
                          fastapi_rate[n].fmt(digits=0)])  # fmt: skip
    part_rows = [
        [labels[n], cells[n, "small", 32].fmt(), parts[n, "small-nostat"].fmt(), parts[n, "small-raw"].fmt()]
        for n in names
        if n != "nginx"
    ]
    notes = sorted(
        {f"{labels[n]} {r}@{c}: {x}" for (n, r, c), cell in cells.items() for x in cell.notes}
        | {f"{labels[n]} 256 MiB: {x}" for n, cell in big.items() for x in cell.notes}
        | {f"{labels[n]} FastAPI: {x}" for n, cell in fastapi.items() for x in cell.notes}
    )
    md = [
        "## ASGI: the same Starlette app under zcopy serve --app, uvicorn and granian "
        f"({'quick' if args.quick else 'full'} run)",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; machine: {machine()}; "
        f"load average at start: {load_average()}; shared with other work (other sessions' tests and builds)",
        f"- command: `{' '.join([os.path.relpath(sys.executable, REPO), 'bench/asgi.py', *shown])}`",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        f"- {rounds} round(s) × {seconds:g} s per wrk run (+1 s warm-up), order shuffled per round; server on CPU0, "
        "wrk -t1 on CPU1 (taskset), warm page cache; server CPU = utime+stime of the server's process tree from "
        "/proc deltas; medians (min–max). One worker process each; access logs off.",
        "- Routes: Starlette `JSONResponse`, `FileResponse` of a 4 KiB and a 256 MiB file (256 MiB: bytes as read "
        "by wrk, 4 connections); FastAPI: a JSON route returning a dict. nginx serves the same files statically.",
        "",
        table(headers, rows),
        "",
        "Where the 4 KiB FileResponse time goes (µs CPU/request @32): the same file by Starlette's `FileResponse` "
        "(stat in a worker thread, ETag, headers), by `FileResponse` given its `stat_result` (no thread hop), and by "
        "a raw ASGI app that sends `http.response.pathsend` at once (uvicorn, which has no pathsend, gets the bytes "
        "in one body message):",
        "",
        table(["server", "FileResponse", "FileResponse, stat given", "raw pathsend"], part_rows),
        "",
        "Requests per second at 32 connections (medians):",
        "",
        table(["server", "JSON req/s", "FileResponse 4 KiB req/s", "FastAPI JSON req/s"], rate_rows),
        "",
    ]
    md += _targets(cells, big)
    if notes:
        md += ["wrk reported: " + "; ".join(notes), ""]
    text = "\n".join(md)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _targets(cells: dict[tuple[str, str, int], Cell], big: dict[str, Cell]) -> list[str]:
    """The issue's targets as ratios of medians measured in this run."""

    def ratio(a: Cell | None, b: Cell | None) -> str:
        if a is None or b is None or not a.values or not b.values:
            return "—"
        return f"{statistics.median(a.values) / statistics.median(b.values):.2f}×"

    def at32(name: str, route: str) -> Cell | None:
        return cells.get((name, route, 32))

    json_r = ratio(at32("zcopy", "json"), at32("uvicorn", "json"))
    small_g = ratio(at32("zcopy", "small"), at32("granian", "small"))
    small_u = ratio(at32("zcopy", "small"), at32("uvicorn", "small"))
    return [
        f"- JSON CPU/request @32, zcopy / uvicorn = **{json_r}** (target ≤ 1.0×, aim 0.85×)",
        f"- FileResponse 4 KiB CPU/request @32, zcopy / granian = **{small_g}** (target ≤ 0.5×); "
        f"zcopy / uvicorn = {small_u}",
        f"- FileResponse 256 MiB CPU/GB, zcopy / granian = **{ratio(big.get('zcopy'), big.get('granian'))}** "
        f"(target ≤ 0.5×); zcopy / nginx = {ratio(big.get('zcopy'), big.get('nginx'))}",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
