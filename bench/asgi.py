"""The same Starlette app under `zcopy serve --app` (uvloop), uvicorn (uvloop + httptools) and granian (ASGI).

Routes: a JSON response, FileResponse of a 4 KiB and of a 256 MiB file; a FastAPI JSON row; nginx serving the two
files statically for reference. Server pinned to CPU0, wrk to CPU1; server CPU (the whole process tree: granian
runs its worker in a child process) from /proc/<pid>/stat before and after each wrk run. Side by side: all servers
run at once, and each measurement takes them back to back in a shuffled order, ≥ 3 rounds; medians (min–max).
Also RSS with 1,000 idle keep-alive connections.
uvicorn and granian are installed by this script into a separate venv (.bench-asgi-venv, never the project's),
with the same Starlette/FastAPI versions as the project venv that runs zcopy.
Usage: .venv/bin/python bench/asgi.py [--quick] [--out FILE.md] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Sequence

from _common import table  # bench/ is sys.path[0] when run as a script
from serve import (
    Cell,
    Measure,
    all_running,
    finish,
    idle_rss_mib,
    of_medians,
    paired,
    parse_args,
    run_lines,
    serve_tree,
    side_by_side,
    start_bench,
)

SMALL_REQUEST = b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n"
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
JSON_BODY = b'{"hello":"world","items":[1,2,3]}'
JSON_HEAD = [(b"content-type", b"application/json"), (b"content-length", str(len(JSON_BODY)).encode())]


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
    # /raw-json: the least an app can do for a JSON answer (the server's own cost, beside Starlette's /json).
    if scope["type"] == "http" and scope["path"] == "/raw-json":
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEAD})
        await send({"type": "http.response.body", "body": JSON_BODY})
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


def main(argv: Sequence[str] | None = None) -> int:
    args, rounds, seconds, levels = parse_args(
        argv, __doc__, "1 round, short runs, 32 connections: proves it works",
        "comma-separated contender names (zcopy, uvicorn, granian, nginx)", 4.0,
    )  # fmt: skip
    idle_n = 1000
    missing = start_bench("bench/asgi")
    if missing is None:
        return 1
    peer_bin, versions = peer_venv()
    tmp, _root = serve_tree("zcopy-bench-asgi-")
    with open(os.path.join(tmp, "benchapp.py"), "w") as f:
        f.write(APP)

    def servers(app: str) -> dict[str, list[str]]:
        return {
            "zcopy": [sys.executable, "-m", "zcopy", "serve", "--app", app, "--app-dir", tmp, "--port", "{port}",
                      "--loop", "uvloop", "--quiet", "--no-access-log", "--max-connections", "100000"],
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
    # Side by side (serve.side_by_side): every server runs for the whole benchmark, the FastAPI app in servers of
    # its own (keys "NAME-fastapi"), and each measurement takes the servers back to back in a shuffled order.
    web = [n for n in names if n != "nginx"]
    plan = [
        *[Measure(path, conns, False, web if route == "json" else names, {n: cells[n, route, conns] for n in names},
                  {n: rates[n, route, conns] for n in names}) for route, path, _ in routes for conns in levels],
        Measure("/big.bin", 4, True, names, big, big_rate),
        *[Measure("/" + r, 32, False, web, {n: parts[n, r] for n in web}, {n: parts_rate[n, r] for n in web})
          for r in ("small-nostat", "small-raw")],
        Measure("/json", 32, False, [f"{n}-fastapi" for n in web], {f"{n}-fastapi": fastapi[n] for n in web},
                {f"{n}-fastapi": fastapi_rate[n] for n in web}),
    ]  # fmt: skip
    servers_: dict[str, tuple[str, list[str]]] = {}
    for name in names:
        if name == "nginx":
            servers_[name] = (name, ["nginx", "-c", "{tmp}/nginx.conf.{port}"])
        else:
            servers_[name] = (name, servers("benchapp:app")[name])
            servers_[f"{name}-fastapi"] = (f"{name}-fastapi", servers("benchapp:fastapi_app")[name])
    with all_running(servers_, tmp, tree=True) as running:
        side_by_side(plan, running, rounds, seconds)
        for name in names:
            rss[name].values.append(idle_rss_mib(running[name], idle_n, SMALL_REQUEST))
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
        *run_lines("bench/asgi.py", argv),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        f"- {rounds} round(s) × {seconds:g} s per wrk run (+1 s warm-up); all servers run at once and each "
        "measurement takes them back to back in a shuffled order (side by side); server on CPU0, "
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
    md += _targets(plan, cells, big)
    finish(md, notes, args.out, tmp)
    return 0


def _targets(plan: list[Measure], cells: dict[tuple[str, str, int], Cell], big: dict[str, Cell]) -> list[str]:
    """The issue's targets as ratios measured in this run: the median of the per-round ratios (the two servers
    measured back to back, so a slow spell of the machine hits both), then the ratio of the medians."""

    def find(path: str, conns: int) -> Measure | None:
        return next((m for m in plan if m.path == path and m.conns == conns and "zcopy" in m.who), None)

    def at32(name: str, route: str) -> Cell | None:
        return cells.get((name, route, 32))

    json32, small32, gb = find("/json", 32), find("/small.bin", 32), find("/big.bin", 4)
    return [
        "Targets, as the median of per-round ratios (min–max); the ratio of the medians above in brackets:",
        "",
        f"- JSON CPU/request @32, zcopy / uvicorn = **{paired(json32, 'zcopy', 'uvicorn')}** "
        f"[{of_medians(at32('zcopy', 'json'), at32('uvicorn', 'json'))}] (target ≤ 1.0×, aim 0.85×)",
        f"- FileResponse 4 KiB CPU/request @32, zcopy / granian = **{paired(small32, 'zcopy', 'granian')}** "
        f"[{of_medians(at32('zcopy', 'small'), at32('granian', 'small'))}] (target ≤ 0.5×); zcopy / uvicorn = "
        f"{paired(small32, 'zcopy', 'uvicorn')}",
        f"- FileResponse 256 MiB CPU/GB, zcopy / granian = **{paired(gb, 'zcopy', 'granian')}** "
        f"[{of_medians(big.get('zcopy'), big.get('granian'))}] (target ≤ 0.5×); zcopy / nginx = "
        f"{paired(gb, 'zcopy', 'nginx')}",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
