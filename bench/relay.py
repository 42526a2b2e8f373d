"""bench/relay.py: `zcopy relay` against socat and HAProxy, and `zcopy send/recv --relay` against magic-wormhole.

1. Relay CPU per GB, the relay pinned to CPU 0, its clients on CPU 1: a 1 GiB stream (a file sendfile()d into the
   socket → relay → a sink that splices to /dev/null) through `zcopy relay`, `socat -b 131072` (a copying relay)
   and HAProxy in TCP mode with `option splice-request` / `option splice-response` (Debian's packages, installed
   with apt-get when missing). Then the relay's CPU per GB while it carries real zcopy sessions of 1 GiB,
   `--plain` and default (TLS), through each (socat and HAProxy forward a direct session; zcopy's relay pairs).
   The relay's CPU is its threads' time on CPU (/proc/PID/task/*/schedstat) over the transfer; socat serves one
   connection and exits, so its CPU is its rusage (start-up included: about a millisecond).
2. The relay's RSS with 200 paired idle sessions (400 client connections; --max-per-address raised for the run).
3. End to end against magic-wormhole 0.24 (its mailbox server and transit relay from PyPI, in a venv of the
   bench's own, both sides with --no-listen so every byte goes through its transit relay, as zcopy's go through
   its relay): a 1 GiB file and a tree of 5,000 × 4 KiB files. Wall time and CPU summed over sender, relay(s)
   and receiver; zcopy in its default mode (TLS 1.3), wormhole's own encryption (NaCl SecretBox).

Each round runs the contenders in a freshly shuffled order; ratios are per round, quoted as median (min–max).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import GiB, MiB, command_line, load_average, machine, make_file, on_cpu1, table, write_report
from serve import cpu_seconds, rss_kib  # /proc readers shared with the server benchmarks

SCRIPT = "bench/relay.py"
PORTS = {"sink": 27500, "haproxy": 27501, "socat": 27502, "zcopy": 27503, "mailbox": 27504, "transit": 27505}
WORMHOLE_PKGS = ["magic-wormhole==0.24.0", "magic-wormhole-mailbox-server==0.8.0",
                 "magic-wormhole-transit-relay==0.5.0"]

# A sink on CPU 1: listens on a port (or dials the relay as the receiver of a nameplate), splices all it gets to
# /dev/null, prints the byte count.
SINK = r"""
import os, socket, sys
from zcopy.relay import protocol as rp
mode = sys.argv[1]
def replies(s, n):
    for _ in range(n):
        head = s.recv(rp.REPLY_HEAD, socket.MSG_WAITALL); k = rp.reply_length(head)
        rep = rp.decode_reply(head, s.recv(k, socket.MSG_WAITALL) if k else b"")
        assert rep.status != rp.ST_REFUSED, rep
if mode == "listen":
    ls = socket.create_server(("127.0.0.1", int(sys.argv[2])), reuse_port=True)
    print("ready", flush=True)
    conn, _ = ls.accept()
else:
    conn = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    conn.sendall(rp.Request(rp.OP_JOIN, rp.SIDE_RECEIVER, sys.argv[3]).encode())
    replies(conn, 1)
    print("ready", flush=True)
    replies(conn, 1)
r, w = os.pipe()
null = os.open("/dev/null", os.O_WRONLY)
total = 0
while True:
    n = os.splice(conn.fileno(), w, 1 << 20)
    if n == 0:
        break
    total += n
    while n:
        n -= os.splice(r, null, n)
print(total, flush=True)
"""

# A source on CPU 1: connects (or dials the relay as the sender of a nameplate) and sendfile()s the file.
SOURCE = r"""
import os, socket, sys
from zcopy.relay import protocol as rp
path, mode, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
if mode == "relay":
    s.sendall(rp.Request(rp.OP_JOIN, rp.SIDE_SENDER, sys.argv[4]).encode())
    for _ in range(2):
        head = s.recv(rp.REPLY_HEAD, socket.MSG_WAITALL); k = rp.reply_length(head)
        rep = rp.decode_reply(head, s.recv(k, socket.MSG_WAITALL) if k else b"")
        assert rep.status != rp.ST_REFUSED, rep
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
off = 0
while off < size:
    off += os.sendfile(s.fileno(), fd, off, size - off)
s.shutdown(socket.SHUT_WR)
s.recv(1)
"""

# 200 paired idle sessions against a relay: 400 connections, all waiting for input; prints "paired" then sleeps.
IDLE = r"""
import socket, sys, time
from zcopy.relay import protocol as rp
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
def reply(s):
    head = s.recv(rp.REPLY_HEAD, socket.MSG_WAITALL); k = rp.reply_length(head)
    rep = rp.decode_reply(head, s.recv(k, socket.MSG_WAITALL) if k else b""); assert rep.status != rp.ST_REFUSED, rep
for i in range(n):
    a = socket.create_connection(("127.0.0.1", port))
    a.sendall(rp.Request(rp.OP_JOIN, rp.SIDE_SENDER, str(i + 1)).encode())
    b = socket.create_connection(("127.0.0.1", port))
    b.sendall(rp.Request(rp.OP_JOIN, rp.SIDE_RECEIVER, str(i + 1)).encode())
    socks += [a, b]
for s in socks:
    reply(s); reply(s)
print("paired", flush=True)
time.sleep(3600)
"""

HAPROXY_CFG = """global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 10s
    timeout client 120s
    timeout server 120s
    option splice-request
    option splice-response
listen fwd
    bind 127.0.0.1:{listen}
    server sink 127.0.0.1:{sink}
"""


def ensure_apt(tools: dict[str, str]) -> list[str]:
    """apt-get install the missing commands (command → package); notes about what could not be had."""
    missing = [pkg for cmd, pkg in tools.items() if shutil.which(cmd) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", *missing], env=env,
                       check=False, capture_output=True)
    return [f"{cmd} missing (apt-get failed)" for cmd in tools if shutil.which(cmd) is None]


def ensure_wormhole(where: str) -> str | None:
    """A venv with magic-wormhole, its mailbox server and transit relay; the venv's bin dir, or None."""
    bin_dir = os.path.join(where, "bin")
    if not os.path.exists(os.path.join(bin_dir, "wormhole")):
        subprocess.run([sys.executable, "-m", "venv", where], check=False, capture_output=True)
        subprocess.run([os.path.join(bin_dir, "pip"), "install", "-q", *WORMHOLE_PKGS], check=False,
                       capture_output=True)
    return bin_dir if os.path.exists(os.path.join(bin_dir, "wormhole")) else None


def task_cpu_ns(pid: int) -> int:
    """Time on CPU of every thread of `pid`, in ns (schedstat)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            total += int(f.read().split()[0])
    return total


def wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def zcopy_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "zcopy", *args]


def wait4(proc: subprocess.Popen[str]) -> float:
    """Wait for a child; its user + system CPU seconds."""
    _, _, ru = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return ru.ru_utime + ru.ru_stime


# -- 1. relay CPU per GB --------------------------------------------------------------------------------------------
@dataclass
class Relays:
    zcopy: subprocess.Popen[str]
    haproxy: subprocess.Popen[str] | None
    plates: Iterator[int]


def stream_through(name: str, relays: Relays, path: str) -> float:
    """One 1 GiB stream through relay `name`; the relay's CPU seconds for it."""
    pre = on_cpu1()
    plate = str(next(relays.plates))
    if name == "zcopy":
        sink = subprocess.Popen([*pre, sys.executable, "-c", SINK, "relay", str(PORTS["zcopy"]), plate],
                                stdout=subprocess.PIPE, text=True)
    else:
        sink = subprocess.Popen([*pre, sys.executable, "-c", SINK, "listen", str(PORTS["sink"])],
                                stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    assert sink.stdout.readline().strip() == "ready"
    socat = None
    if name == "socat":
        socat = subprocess.Popen(["taskset", "-c", "0", "socat", "-b", "131072",
                                  f"TCP-LISTEN:{PORTS['socat']},reuseaddr,bind=127.0.0.1",
                                  f"TCP:127.0.0.1:{PORTS['sink']}"], text=True)
        wait_port_free_listen(PORTS["socat"])
    pid = relays.zcopy.pid if name == "zcopy" else relays.haproxy.pid if relays.haproxy and name == "haproxy" else 0
    before = task_cpu_ns(pid) if pid else 0
    mode = "relay" if name == "zcopy" else "direct"
    src = subprocess.run([*pre, sys.executable, "-c", SOURCE, path, mode, str(PORTS[name]), plate], check=True)
    del src
    sink.communicate(timeout=120)
    if socat is not None:
        return wait4(socat)  # type: ignore[arg-type]
    return (task_cpu_ns(pid) - before) / 1e9


def wait_port_free_listen(port: int) -> None:
    """socat is listening once a connect succeeds... which would use up its one connection: poll /proc instead."""
    want = f":{port:04X} "
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with open("/proc/net/tcp") as f:
            if any(want in line and line.split()[3] == "0A" for line in f):
                return
        time.sleep(0.02)
    raise RuntimeError(f"socat did not listen on {port}")


def session_through(name: str, relays: Relays, path: str, plain: bool, out_dir: str) -> float:
    """One real zcopy session of 1 GiB through relay `name` (socat/HAProxy forward a direct session to a
    listening receiver); the relay's CPU seconds for it."""
    extra = ["--plain"] if plain else []
    dst = tempfile.mkdtemp(dir=out_dir)
    try:
        plate = next(relays.plates)
        code = f"{plate}-bench-run"
        socat = None
        if name == "zcopy":
            rx = subprocess.Popen([*on_cpu1(), *zcopy_cmd("recv", dst, "--relay", f"127.0.0.1:{PORTS['zcopy']}",
                                                           code, "--cache", *extra)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
            target = ["--relay", f"127.0.0.1:{PORTS['zcopy']}", "--code", code]
            pid = relays.zcopy.pid
        else:
            rx = subprocess.Popen([*on_cpu1(), *zcopy_cmd("recv", dst, "--listen", f"127.0.0.1:{PORTS['sink']}",
                                                           "--once", "--cache", *extra)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            assert rx.stderr is not None
            rx.stderr.readline()  # listening
            if name == "socat":
                socat = subprocess.Popen(["taskset", "-c", "0", "socat", "-b", "131072",
                                          f"TCP-LISTEN:{PORTS['socat']},reuseaddr,bind=127.0.0.1",
                                          f"TCP:127.0.0.1:{PORTS['sink']}"], text=True)
                wait_port_free_listen(PORTS["socat"])
            target = [f"127.0.0.1:{PORTS[name]}"]
            pid = relays.haproxy.pid if (name == "haproxy" and relays.haproxy) else 0
        before = task_cpu_ns(pid) if pid else 0
        subprocess.run([*on_cpu1(), *zcopy_cmd("send", path, *target, *extra)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rx.communicate(timeout=120)
        if socat is not None:
            return wait4(socat)  # type: ignore[arg-type]
        return (task_cpu_ns(pid) - before) / 1e9
    finally:
        shutil.rmtree(dst, ignore_errors=True)


def ratio_text(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f}× ({min(xs):.2f}–{max(xs):.2f})"


def part_cpu(rounds: int, size: int, tmp: str, out_dir: str, notes: list[str]) -> str:
    path = os.path.join(tmp, "stream.bin")
    make_file(path, size)
    with open(path, "rb") as f:  # warm: the sources sendfile from the page cache
        while f.read(8 * MiB):
            pass
    gb = size / 1e9
    zr = subprocess.Popen(["taskset", "-c", "0", *zcopy_cmd("relay", "--listen", f"127.0.0.1:{PORTS['zcopy']}",
                                                             "--max-per-address", "1000")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(HAPROXY_CFG.format(listen=PORTS["haproxy"], sink=PORTS["sink"]))
    hp = None
    if shutil.which("haproxy"):
        hp = subprocess.Popen(["taskset", "-c", "0", "haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, text=True)
        wait_port(PORTS["haproxy"])  # (its connection to the sink fails: nothing listens yet; harmless)
    wait_port(PORTS["zcopy"])
    relays = Relays(zr, hp, iter(range(1000, 10**6)))
    names = ["zcopy"] + (["socat"] if shutil.which("socat") else []) + (["haproxy"] if hp else [])
    rng = random.Random(23)
    stream: dict[str, list[float]] = {n: [] for n in names}
    sess: dict[tuple[str, bool], list[float]] = {(n, pl): [] for n in names for pl in (True, False)}
    try:
        for _ in range(rounds):
            order = names[:]
            rng.shuffle(order)
            for n in order:
                stream[n].append(stream_through(n, relays, path) / gb)
            jobs = list(sess)
            rng.shuffle(jobs)
            for n, pl in jobs:
                sess[(n, pl)].append(session_through(n, relays, path, pl, out_dir) / gb)
    finally:
        stop(zr)
        if hp is not None:
            stop(hp, signal.SIGUSR1)
            stop(hp)

    def row(label: str, xs: list[float], base: dict[str, list[float]]) -> list[str]:
        cells = [label, f"{statistics.median(xs):.3f} ({min(xs):.3f}–{max(xs):.3f})"]
        for peer in ("socat", "haproxy"):
            if peer in base and label.split()[0] == "zcopy":
                cells.append(ratio_text([a / b for a, b in zip(xs, base[peer], strict=True)]))
            else:
                cells.append("")
        return cells

    rows = [row(f"{n} relay" if n == "zcopy" else n, stream[n], stream) for n in names]
    text = [f"### Relay CPU per GB (relay on CPU 0, {size / GiB:g} GiB, {rounds} rounds)\n",
            "A stream (sendfile into the socket → relay → splice to /dev/null). CPU seconds per GB of the relay "
            "process; zcopy's ratios are per round against the same round's peer.\n",
            table(["relay", "CPU s/GB, median (min–max)", "zcopy ÷ socat", "zcopy ÷ HAProxy"], rows), ""]
    rows2 = []
    for pl in (True, False):
        base = {n: sess[(n, pl)] for n in names}
        for n in names:
            label = f"{'zcopy relay' if n == 'zcopy' else n}, {'--plain' if pl else 'default (TLS)'}"
            rows2.append(row(label, sess[(n, pl)], base))
    text += [f"zcopy sessions of {size / GiB:g} GiB through each (zcopy send → relay → zcopy recv --cache into a "
             "temporary directory; socat and HAProxy forward a direct session, zcopy's relay a paired one):\n",
             table(["relay, session mode", "CPU s/GB, median (min–max)", "zcopy ÷ socat", "zcopy ÷ HAProxy"], rows2),
             ""]
    if not hp or not shutil.which("socat"):
        notes.append("socat or HAProxy missing: their columns are empty")
    return "\n".join(text)


# -- 2. RSS with idle sessions ----------------------------------------------------------------------------------------
def part_rss(sessions: int) -> str:
    zr = subprocess.Popen(zcopy_cmd("relay", "--listen", f"127.0.0.1:{PORTS['zcopy']}", "--max-per-address",
                                    str(4 * sessions)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          text=True)
    try:
        wait_port(PORTS["zcopy"])
        time.sleep(0.5)
        idle0 = rss_kib(zr.pid)
        cl = subprocess.Popen([sys.executable, "-c", IDLE, str(PORTS["zcopy"]), str(sessions)],
                              stdout=subprocess.PIPE, text=True)
        assert cl.stdout is not None
        assert cl.stdout.readline().strip() == "paired"
        time.sleep(0.5)
        rss = rss_kib(zr.pid)
        stop(cl, signal.SIGKILL)
    finally:
        stop(zr)
    return (f"### Relay memory\n\nRSS of `zcopy relay` with {sessions} paired idle sessions ({2 * sessions} client "
            f"connections, {4 * sessions} pipe ends): **{rss / 1024:.1f} MiB** (at start, no session: "
            f"{idle0 / 1024:.1f} MiB). Target ≤ 64 MiB. Pipe buffers are kernel memory, allocated as bytes flow.\n")


# -- 3. end to end against magic-wormhole -----------------------------------------------------------------------------
def make_tree(root: str, files: int, size: int) -> None:
    if os.path.isdir(root) and len(os.listdir(root)) == files // 100:
        return
    block = os.urandom(size)
    for d in range(files // 100):
        sub = os.path.join(root, f"d{d:03}")
        os.makedirs(sub, exist_ok=True)
        for i in range(100):
            with open(os.path.join(sub, f"f{i:03}"), "wb") as f:
                f.write(block[: size - 1] + bytes([i]))


@dataclass
class E2E:
    wall: float
    cpu: float


def e2e_zcopy(path: str, out_dir: str, plate: int) -> E2E:
    relay = subprocess.Popen(zcopy_cmd("relay", "--listen", f"127.0.0.1:{PORTS['zcopy']}"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    dst = tempfile.mkdtemp(dir=out_dir)
    try:
        wait_port(PORTS["zcopy"])
        r0 = cpu_seconds(relay.pid)
        code = f"{plate}-bench-run"
        t0 = time.perf_counter()
        snd = subprocess.Popen(zcopy_cmd("send", path, "--relay", f"127.0.0.1:{PORTS['zcopy']}", "--code", code),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        rcv = subprocess.Popen(zcopy_cmd("recv", dst, "--relay", f"127.0.0.1:{PORTS['zcopy']}", code),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        cpu = wait4(snd) + wait4(rcv)
        wall = time.perf_counter() - t0
        cpu += cpu_seconds(relay.pid) - r0
        return E2E(wall, cpu)
    finally:
        stop(relay)
        shutil.rmtree(dst, ignore_errors=True)
        os.sync()


def e2e_wormhole(bin_dir: str, path: str, out_dir: str, plate: int) -> E2E:
    twistd = os.path.join(bin_dir, "twistd")
    # Both servers keep their database (relay.sqlite, usage files) in their working directory: a scratch one.
    state = tempfile.mkdtemp(dir=out_dir)
    mb = subprocess.Popen([twistd, "-n", "--pidfile=", "wormhole-mailbox", "--port",
                           f"tcp:{PORTS['mailbox']}:interface=127.0.0.1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, cwd=state)
    tr = subprocess.Popen([twistd, "-n", "--pidfile=", "transitrelay", "--port",
                           f"tcp:{PORTS['transit']}:interface=127.0.0.1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, cwd=state)
    dst = tempfile.mkdtemp(dir=out_dir)
    env = dict(os.environ, WORMHOLE_RELAY_URL=f"ws://127.0.0.1:{PORTS['mailbox']}/v1",
               WORMHOLE_TRANSIT_HELPER=f"tcp:127.0.0.1:{PORTS['transit']}")
    try:
        wait_port(PORTS["mailbox"])
        wait_port(PORTS["transit"])
        c0 = cpu_seconds(mb.pid) + cpu_seconds(tr.pid)
        code = f"{plate}-bench-run"
        wh = os.path.join(bin_dir, "wormhole")
        t0 = time.perf_counter()
        snd = subprocess.Popen([wh, "send", "--no-listen", "--hide-progress", "--no-qr", "--code", code, path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, text=True)
        rcv = subprocess.Popen([wh, "receive", "--no-listen", "--hide-progress", "--accept-file", "-o",
                                os.path.join(dst, os.path.basename(path)), code],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, text=True)
        cpu = wait4(snd) + wait4(rcv)
        wall = time.perf_counter() - t0
        cpu += cpu_seconds(mb.pid) + cpu_seconds(tr.pid) - c0
        if not os.path.exists(os.path.join(dst, os.path.basename(path))):
            raise RuntimeError("wormhole delivered nothing")
        return E2E(wall, cpu)
    finally:
        stop(mb)
        stop(tr)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
        os.sync()


def part_e2e(rounds: int, size: int, tree_files: int, tmp: str, out_dir: str, bin_dir: str | None,
             notes: list[str]) -> str:
    if bin_dir is None:
        notes.append("magic-wormhole could not be installed: end-to-end comparison skipped")
        return ""
    big = os.path.join(tmp, "big.bin")
    make_file(big, size)
    tree = os.path.join(tmp, "tree")
    make_tree(tree, tree_files, 4096)
    os.sync()
    plates = iter(range(2000, 10**6))
    rows = []
    for label, path in ((f"{size / GiB:g} GiB file", big), (f"{tree_files:,} × 4 KiB files", tree)):
        res: dict[str, list[E2E]] = {"zcopy": [], "wormhole": []}
        rng = random.Random(7)
        for _ in range(rounds):
            order = list(res)
            rng.shuffle(order)
            for n in order:
                if n == "zcopy":
                    res[n].append(e2e_zcopy(path, out_dir, next(plates)))
                else:
                    res[n].append(e2e_wormhole(bin_dir, path, out_dir, next(plates)))
        z, w = res["zcopy"], res["wormhole"]
        rows.append([label, f"{statistics.median(e.wall for e in z):.2f} s",
                     f"{statistics.median(e.wall for e in w):.2f} s",
                     ratio_text([a.wall / b.wall for a, b in zip(z, w, strict=True)]),
                     f"{statistics.median(e.cpu for e in z):.2f} s", f"{statistics.median(e.cpu for e in w):.2f} s",
                     ratio_text([a.cpu / b.cpu for a, b in zip(z, w, strict=True)])])
    return "\n".join([
        f"### End to end against magic-wormhole ({rounds} rounds)\n",
        "Sender, relay(s) and receiver on this machine, unpinned; each receiver writes into a new directory on the "
        "temp file system (new files: page-cache and writeback costs included, synced untimed between runs). "
        "Wall: sender start to both ends. CPU: user + system of sender, receiver and relay (zcopy's one relay; "
        "wormhole's mailbox server and transit relay). Targets: wall ≤ 0.5×, CPU ≤ 0.5×.\n",
        table(["payload", "zcopy wall", "wormhole wall", "wall ratio", "zcopy CPU", "wormhole CPU", "CPU ratio"],
              rows), "",
        "The small-file tree is bound by the receiver's per-file work, not by the relay: for each file zcopy "
        "creates a locked 0600 partial, writes it, sets its mode and mtime, and after one syncfs per 2048 files "
        "renames it and fsyncs its directory (a file is never seen incomplete, and survives a crash); wormhole "
        "unzips one archive with no lock, rename or fsync. The same tree sent directly (no relay) takes about as "
        "long, and `python -m cProfile -m zcopy send TREE HOST:PORT` shows the sender waiting on the receiver.", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="64 MiB, 500 files, 1 round: proves the script works")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--only", choices=("cpu", "rss", "e2e"), action="append", help="run only these parts")
    ap.add_argument("--out", help="write a markdown section here")
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    size = 64 * MiB if args.quick else GiB
    files = 500 if args.quick else 5000
    parts = set(args.only or ("cpu", "rss", "e2e"))
    notes = ensure_apt({"socat": "socat", "haproxy": "haproxy", "taskset": "util-linux"})
    load0 = load_average()
    tmp = tempfile.mkdtemp(prefix="zcopy-bench-relay-", dir=os.environ.get("ZCOPY_BENCH_DIR"))
    try:
        out_dir = os.path.join(tmp, "out")
        os.makedirs(out_dir)
        sections = []
        if "cpu" in parts:
            sections.append(part_cpu(rounds, size, tmp, out_dir, notes))
        if "rss" in parts:
            sections.append(part_rss(200))
        if "e2e" in parts:
            bin_dir = ensure_wormhole(os.path.join(tempfile.gettempdir(), "zcopy-bench-wormhole-venv"))
            sections.append(part_e2e(rounds, size, files, tmp, out_dir, bin_dir, notes))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    head = (f"## bench/relay.py\n\n`{command_line(SCRIPT, argv)}` on {when}, {machine()}; load average {load0} "
            f"at start, {load_average()} at the end (other engineers' work ran "
            "alongside). croc is not installable here, so it is not measured; its tracker reports it at half the "
            "speed of `nc` (croc#1137) and over 10 s for 16 small files (croc#584), quoted, not measured.\n")
    body = "\n".join(s for s in sections if s)
    write_report(head + "\n" + body + ("\n" + "; ".join(notes) + "\n" if notes else ""), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
