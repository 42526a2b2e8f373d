"""Issue #20's attack loads at full size, zcopy against uvicorn on the same Starlette app, side by side.

- TLS slow readers (F6): N clients GET an 8 MiB file over TLS, read 16 KiB, stop reading until all N are in
  that state, then close. Server RSS before, while all N are stalled, and 3 s after they left. zcopy static, zcopy
  `--app` (Starlette FileResponse) and uvicorn (same app). Target: ≤ 200 MB peak at 2,000, back within 2× of the
  baseline afterwards.
- FIN/RST storm on an app that never answers (F5): N clients send `GET /never`, half close with a FIN, half with
  an RST. Server descriptors before, and 5 s after the clients left.
- WebSocket peers vanishing with a FIN (F1): N clients handshake, read the 101 and close. Descriptors 5 s after.
Each load runs against each contender in a shuffled order; one process per contender, started fresh per load.
uvicorn comes from bench/asgi.py's peer venv (.bench-asgi-venv, plus wsproto). Servers pinned to CPU0, clients to CPU1.
Usage: .venv/bin/python bench/attack.py [--quick] [--out FILE.md] [-n N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from _common import command_line, load_average, machine, other_work, pin, table, write_report
from asgi import peer_venv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tests.serve.storm import fds, lift_nofile, rss_kib, slow_readers  # noqa: E402

APP = '''
import asyncio, os
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route, WebSocketRoute

ROOT = os.environ["ATTACK_ROOT"]

async def big(request):
    return FileResponse(os.path.join(ROOT, "big.bin"))

async def never(request):
    await asyncio.Event().wait()

async def ws(websocket):
    await websocket.accept()
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass

app = Starlette(routes=[Route("/big.bin", big), Route("/never", never), WebSocketRoute("/ws", ws)])
'''
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
PORT = re.compile(r"(?:https?://[\d.]+:|port )(\d+)")


class Contender:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name, self.cmd, self.env = name, cmd, env
        self.p: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> None:
        port = _free_port()
        cmd = [c.replace("{PORT}", str(port)) for c in self.cmd]
        self.p = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=self.env, preexec_fn=lambda: lift_nofile(20000))  # fmt: skip
        self.port = port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                time.sleep(0.5)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    @property
    def pid(self) -> int:
        assert self.p is not None
        return self.p.pid

    def stop(self) -> None:
        if self.p is not None:
            self.p.kill()
            self.p.wait()
            self.p = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tls_readers(c: Contender, n: int, ctx: ssl.SSLContext) -> list[str]:
    c.start()
    try:
        base = rss_kib(c.pid)[0]
        stalled: list[int] = []

        def measure() -> None:
            time.sleep(2.0)
            stalled.append(rss_kib(c.pid)[0])

        got = asyncio.run(slow_readers(("127.0.0.1", c.port), b"/big.bin", n, tls=ctx, on_stalled=measure))
        time.sleep(3.0)
        after, peak = rss_kib(c.pid)
        return [c.name, f"{got[0]}/{n}", f"{base / 1024:.0f}", f"{stalled[0] / 1024:.0f}", f"{peak / 1024:.0f}",
                f"{after / 1024:.0f}", f"{after / base:.1f}×"]  # fmt: skip
    finally:
        c.stop()


def fin_storm(c: Contender, n: int) -> list[str]:
    c.start()
    try:
        base = fds(c.pid)
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
            s.sendall(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socks.append(s)
        time.sleep(1.0)
        during = fds(c.pid)
        for s in socks:
            s.close()
        time.sleep(5.0)
        return [c.name, str(n), str(base), str(during), str(fds(c.pid))]
    finally:
        c.stop()


def ws_fin(c: Contender, n: int) -> list[str]:
    c.start()
    try:
        base = fds(c.pid)
        ok = 0
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", c.port), timeout=10) as s:
                s.sendall(UPGRADE)
                ok += s.recv(4096).startswith(b"HTTP/1.1 101")
        time.sleep(5.0)
        return [c.name, f"{ok}/{n}", str(base), str(fds(c.pid))]
    finally:
        c.stop()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 clients instead of 2,000 (proves it works)")
    ap.add_argument("-n", type=int, help="clients per load (default 2000, --quick 200)")
    ap.add_argument("--out", help="write the markdown section here")
    args = ap.parse_args(argv)
    n = args.n or (200 if args.quick else 2000)
    if shutil.which("openssl") is None or shutil.which("taskset") is None:
        print("bench/attack: needs openssl and taskset", file=sys.stderr)
        return 1
    lift_nofile(n + 1000)
    peer_bin, versions = peer_venv()
    # uvicorn's WebSockets need a library of their own; wsproto, the one zcopy uses, for a like-for-like run.
    subprocess.run([os.path.join(peer_bin, "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "wsproto"], check=True)  # fmt: skip
    tmp = tempfile.mkdtemp(prefix="zcopy-bench-attack-")
    try:
        with open(os.path.join(tmp, "big.bin"), "wb") as f:
            f.write(os.urandom(8 << 20))
        with open(os.path.join(tmp, "attackapp.py"), "w") as f:
            f.write(APP)
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)  # fmt: skip
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
        env = {**os.environ, "ATTACK_ROOT": tmp, "PYTHONPATH": tmp}
        zc = [sys.executable, "-m", "zcopy", "serve"]
        common = ["--port", "{PORT}", "--max-connections", str(n + 100), "--send-timeout", "600"]
        app = ["--app", "attackapp:app", "--app-dir", tmp]
        uv = [os.path.join(peer_bin, "uvicorn"), "attackapp:app", "--app-dir", tmp, "--port", "{PORT}",
              "--loop", "uvloop", "--http", "httptools", "--ws", "wsproto", "--log-level", "warning"]  # fmt: skip
        tls_z, tls_u = ["--tls-cert", cert, "--tls-key", key], ["--ssl-certfile", cert, "--ssl-keyfile", key]
        pin(1)
        loads = {
            "tls": [Contender("zcopy static", [*zc, tmp, *common, *tls_z], env),
                    Contender("zcopy --app", [*zc, *app, *common, *tls_z], env),
                    Contender("uvicorn", [*uv, *tls_u], env)],
            "fin": [Contender("zcopy --app", [*zc, *app, *common], env), Contender("uvicorn", uv, env)],
            "ws": [Contender("zcopy --app", [*zc, *app, *common], env), Contender("uvicorn", uv, env)],
        }  # fmt: skip
        rows: dict[str, list[list[str]]] = {k: [] for k in loads}
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        for kind, contenders in loads.items():
            order = contenders[:]
            random.shuffle(order)
            for c in order:
                print(f"bench/attack: {kind} {c.name} n={n}", file=sys.stderr, flush=True)
                run = tls_readers(c, n, ctx) if kind == "tls" else fin_storm(c, n) if kind == "fin" else ws_fin(c, n)
                rows[kind].append(run)
        text = "\n".join([
            "## Attack loads (issue #20): zcopy and uvicorn side by side", "",
            f"`{command_line('bench/attack.py', list(argv) if argv is not None else None)}`, {started}, "
            f"{machine()}; load average at the end {load_average()}, {other_work()}. Versions: "
            + ", ".join(f"{k} {v}" for k, v in versions.items()) + ". Servers on CPU0, clients on CPU1.", "",
            f"TLS readers that stall in an 8 MiB file ({n}; MB = MiB of server RSS; target ≤ 200 peak, after ≤ 2×"
            " base):", "",
            table(["server", "stalled", "base", "all stalled", "peak (VmHWM)", "3 s after", "after/base"],
                  sorted(rows["tls"])),
            "", f"An app that never answers; {n} clients, half FIN, half RST (descriptors):", "",
            table(["server", "clients", "before", "with clients", "5 s after they left"], sorted(rows["fin"])),
            "", "WebSocket clients that vanish with a FIN after the 101 (descriptors):", "",
            table(["server", "101s", "before", "5 s after"], sorted(rows["ws"])), "",
        ])  # fmt: skip
        write_report(text, args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
