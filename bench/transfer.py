"""Transfer benchmark: `zcopy send`/`recv` against plain Python senders/receivers, `nc`, `tar | nc` and scp,
over 127.0.0.1.

Side by side in one run, warm page cache, medians of N rounds with the contenders' order shuffled each round.
Three parts (--only picks one; each stays under the 12-minute bench-lock budget on its own):
- plain: `--plain` (sender by sendfile; receiver by O_DIRECT, or splice with --cache): the measured side runs in
  this process pinned to CPU 0 (CPU = that thread's user+sys, RUSAGE_THREAD); the peer is a separate process
  pinned to CPU 1. Checksums are excluded from the CPU ratios (--checksum none) and their cost is reported
  separately, per algorithm. Every receiver fsyncs.
- tree: 20,000 x 4 KiB files in 100 directories, zcopy (TLS and --plain) against tar c | nc -> nc | tar x.
- scp: one large file, zcopy encrypted vs --plain vs scp to an sshd on 127.0.0.1 (installed with apt if missing).
Usage: python bench/transfer.py [--quick] [--only plain|tree|scp] [--size BYTES] [--rounds N] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _common import (
    GiB,
    MiB,
    Result,
    Sample,
    children_cpu,
    command_line,
    drop_dirty,
    load_average,
    machine,
    make_file,
    on_cpu1,
    other_work,
    pin,
    run_rounds,
    table,
    thread_cpu,
    timed,
    warm,
    write_report,
)

from zcopy import FileChannel
from zcopy.transfer import Receiver, hashing, send
from zcopy.transfer import checksum as ck

# Plain peers: a sender that sendfile()s a size-prefixed file, and a receiver doing recv_into + write + fsync.
PLAIN_SENDER = r"""
import os, socket, struct, sys
path, port = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)
s = socket.create_connection(("127.0.0.1", port))
s.sendall(struct.pack(">Q", size))
fd = os.open(path, os.O_RDONLY)
off = 0
while off < size:
    off += os.sendfile(s.fileno(), fd, off, size - off)
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
"""
PLAIN_RECEIVER = r"""
import os, socket, struct, sys
dst = sys.argv[1]
srv = socket.create_server(("127.0.0.1", 0)); print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
buf = bytearray(1 << 20); view = memoryview(buf)
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
while n := c.recv_into(buf):
    done = 0
    while done < n:
        done += os.write(fd, view[done:n])
os.fsync(fd); os.close(fd); c.close()
"""
ZCOPY = [sys.executable, "-m", "zcopy"]
RX_ZCOPY = "zcopy Receiver --cache (splice, checksum none)"
RX_SAME = "zcopy Receiver --route readwrite (recv_into + pwrite, page cache)"
RX_PLAIN = "plain recv_into + write 1 MiB + fsync"
RX_DIRECT = "zcopy Receiver, default (O_DIRECT from its buffer, xxh3 there)"
TX_ZCOPY = "zcopy send (sendfile, checksum none)"
TX_SAME = "zcopy send --route readwrite (pread + send)"
TX_PLAIN = "plain read + sendall 64 KiB"
_LISTEN = re.compile(r"listening on [0-9.]+:(\d+)")


def _plain_recv_into_write(sock: socket.socket, dst: str) -> int:
    """The baseline receiver: 8-byte size, then recv_into a 1 MiB buffer + write, then fsync."""
    head = b""
    while len(head) < 8:
        head += sock.recv(8 - len(head))
    (size,) = struct.unpack(">Q", head)
    buf = bytearray(MiB)
    view = memoryview(buf)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    got = 0
    try:
        while got < size and (n := sock.recv_into(buf)):
            done = 0
            while done < n:
                done += os.write(fd, view[done:n])
            got += n
        os.fsync(fd)
    finally:
        os.close(fd)
    return got


def _plain_read_sendall(path: str, sock: socket.socket) -> None:
    buf = bytearray(64 * 1024)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        while n := os.readv(fd, [buf]):
            sock.sendall(view[:n])
    finally:
        os.close(fd)


class Bench:
    def __init__(self, src: str, size: int, tmp: str) -> None:
        self.src = src
        self.size = size
        self.tmp = tmp
        self.routes: dict[str, set[str]] = {"sender": set(), "receiver": set()}
        self._n = 0

    def _fresh_dir(self) -> str:
        self._n += 1
        d = os.path.join(self.tmp, f"dst{self._n}")
        os.mkdir(d)
        return d

    def _clean(self, d: str) -> None:
        shutil.rmtree(d, ignore_errors=True)

    # -- receiver CPU ----------------------------------------------------------------------------------------
    def zcopy_receiver(self, algo: str, route: str | None = None, cache: bool = True) -> Sample:
        d = self._fresh_dir()
        with Receiver(d, ("127.0.0.1", 0), route=route, plain=True, cache=cache) as rx:
            peer = subprocess.Popen([*on_cpu1(), *ZCOPY, "send", self.src, f"127.0.0.1:{rx.address[1]}",
                                     "--checksum", algo, "--plain"], stdout=subprocess.DEVNULL)
            conn, who = rx.accept()
            c0, t0 = thread_cpu(), time.perf_counter()
            res = rx.handle(conn, who)
            sample = Sample(time.perf_counter() - t0, thread_cpu() - c0)
            peer.wait()
        assert res.ok and res.bytes == self.size, res
        if route is None:
            self.routes["receiver"].update(res.routes)
        self._clean(d)
        return sample

    def plain_receiver(self) -> Sample:
        d = self._fresh_dir()
        with socket.create_server(("127.0.0.1", 0)) as srv:
            port = srv.getsockname()[1]
            peer = subprocess.Popen([*on_cpu1(), sys.executable, "-c", PLAIN_SENDER, self.src, str(port)])
            conn, _ = srv.accept()
            c0, t0 = thread_cpu(), time.perf_counter()
            got = _plain_recv_into_write(conn, os.path.join(d, "f"))
            sample = Sample(time.perf_counter() - t0, thread_cpu() - c0)
            conn.close()
            peer.wait()
        assert got == self.size
        self._clean(d)
        return sample

    # -- sender CPU ------------------------------------------------------------------------------------------
    def _spawn_zcopy_recv(self, d: str, plain: bool = True) -> tuple[subprocess.Popen[str], int]:
        return spawn_zcopy_recv(d, plain)

    def zcopy_sender(self, algo: str, route: str | None = None) -> Sample:
        d = self._fresh_dir()
        peer, port = self._spawn_zcopy_recv(d)
        c0, t0 = thread_cpu(), time.perf_counter()
        res = send([self.src], ("127.0.0.1", port), checksum_name=algo, route=route, plain=True)
        sample = Sample(time.perf_counter() - t0, thread_cpu() - c0)
        peer.wait()
        assert res.ok and res.bytes_sent == self.size, res
        if route is None:
            self.routes["sender"].update(res.routes)
        self._clean(d)
        return sample

    def plain_sender(self) -> Sample:
        d = self._fresh_dir()
        peer = subprocess.Popen([*on_cpu1(), sys.executable, "-c", PLAIN_RECEIVER, os.path.join(d, "f")],
                                stdout=subprocess.PIPE, text=True)
        assert peer.stdout is not None
        port = int(peer.stdout.readline())
        sock = socket.create_connection(("127.0.0.1", port))
        c0, t0 = thread_cpu(), time.perf_counter()
        _plain_read_sendall(self.src, sock)
        cpu = thread_cpu() - c0
        sock.close()
        peer.wait()
        sample = Sample(time.perf_counter() - t0, cpu)
        assert os.path.getsize(os.path.join(d, "f")) == self.size
        self._clean(d)
        return sample

    # -- wall, end to end, both ends as commands -------------------------------------------------------------
    def zcopy_cli(self, algo: str) -> Sample:
        d = self._fresh_dir()
        peer, port = self._spawn_zcopy_recv(d)
        c0, t0 = children_cpu(), time.perf_counter()
        subprocess.run([*ZCOPY, "send", self.src, f"127.0.0.1:{port}", "--checksum", algo, "--plain"], check=True,
                       stdout=subprocess.DEVNULL)
        peer.wait()
        sample = Sample(time.perf_counter() - t0, children_cpu() - c0)
        assert peer.returncode == 0
        self._clean(d)
        return sample

    def nc(self, fsync: bool) -> Sample:
        d = self._fresh_dir()
        dst = os.path.join(d, "f")
        with socket.socket() as s:  # a free port for nc -l
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with open(dst, "wb") as out:
            peer = subprocess.Popen([*on_cpu1(), "nc", "-l", "127.0.0.1", str(port)], stdout=out)
            _wait_listening(port)
            c0, t0 = children_cpu(), time.perf_counter()
            with open(self.src, "rb") as inp:
                subprocess.run(["nc", "-N", "127.0.0.1", str(port)], stdin=inp, check=True)
            peer.wait()
            if fsync:
                os.fsync(out.fileno())
            sample = Sample(time.perf_counter() - t0, children_cpu() - c0)
        assert os.path.getsize(dst) == self.size
        self._clean(d)
        return sample


def spawn_zcopy_recv(d: str, plain: bool) -> tuple[subprocess.Popen[str], int]:
    """`zcopy recv --once` on CPU 1; returns it and its port."""
    peer = subprocess.Popen([*on_cpu1(), *ZCOPY, "recv", d, "--listen", "127.0.0.1:0", "--once", "--no-token",
                             *(["--plain"] if plain else [])], stderr=subprocess.PIPE, text=True)
    assert peer.stderr is not None
    m = _LISTEN.search(peer.stderr.readline())
    assert m, "zcopy recv did not start"
    return peer, int(m.group(1))


def _wait4(proc: subprocess.Popen[Any]) -> float:
    """Reap `proc` and return its CPU (user + sys), its reaped descendants included (wait4 rusage)."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Split(Sample):
    """A sample with each side's CPU: sender (on CPU 0) and receiver (on CPU 1)."""

    tx_cpu_s: float = 0.0
    rx_cpu_s: float = 0.0


# --- a tree of small files ------------------------------------------------------------------------------------
TREE_FILES, TREE_DIRS, TREE_FILE_SIZE = 20_000, 100, 4096


def make_small_tree(root: str, files: int, dirs: int, size: int) -> str:
    tree = os.path.join(root, "tree")
    for d in range(dirs):
        os.makedirs(os.path.join(tree, f"d{d:03}"))
    for i in range(files):
        with open(os.path.join(tree, f"d{i % dirs:03}", f"f{i:05}"), "wb") as f:
            f.write(os.urandom(size))
    return tree


class TreeBench:
    """Both ends as commands (receiver on CPU 1, sender on CPU 0); wall from the sender's start to the receiver's
    exit (and the sync, where there is one); CPU of both sides."""

    def __init__(self, tree: str, tmp: str, files: int) -> None:
        self.tree = tree
        self.tmp = tmp
        self.files = files
        self._n = 0
        self.summary: dict[str, dict[str, object]] = {}

    def _fresh(self) -> str:
        self._n += 1
        d = os.path.join(self.tmp, f"tdst{self._n}")
        os.mkdir(d)
        return d

    def zcopy(self, plain: bool) -> Split:
        d = self._fresh()
        peer, port = spawn_zcopy_recv(d, plain)
        t0 = time.perf_counter()
        tx = subprocess.Popen([*ZCOPY, "send", self.tree, f"127.0.0.1:{port}", "--json",
                               *(["--plain"] if plain else [])], stdout=subprocess.PIPE, text=True)
        assert tx.stdout is not None
        out = tx.stdout.read()
        tx_cpu = _wait4(tx)
        rx_cpu = _wait4(peer)
        wall = time.perf_counter() - t0
        assert tx.returncode == 0 and peer.returncode == 0, out
        res = json.loads(out)
        assert res["files"] == self.files, res
        self.summary["plain" if plain else "tls"] = {k: res[k] for k in ("encryption", "routes", "batched_files")}
        shutil.rmtree(d, ignore_errors=True)
        return Split(wall, tx_cpu + rx_cpu, tx_cpu, rx_cpu)

    def tar_nc(self, sync: bool) -> Split:
        d = self._fresh()
        with socket.socket() as s:  # a free port for nc -l
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        rx = subprocess.Popen([*on_cpu1(), "sh", "-c", f"nc -l 127.0.0.1 {port} | tar x -C {shlex.quote(d)}"])
        _wait_listening(port)
        t0 = time.perf_counter()
        parent, base = os.path.split(self.tree)
        tx = subprocess.Popen(["sh", "-c", f"tar c -C {shlex.quote(parent)} {shlex.quote(base)} | nc -N 127.0.0.1 "
                               f"{port}"])
        tx_cpu = _wait4(tx)
        rx_cpu = _wait4(rx)
        if sync:
            os.sync()
        wall = time.perf_counter() - t0
        assert tx.returncode == 0 and rx.returncode == 0
        shutil.rmtree(d, ignore_errors=True)
        return Split(wall, tx_cpu + rx_cpu, tx_cpu, rx_cpu)


def warm_tree(tree: str) -> None:
    """Read every file once (untimed): all contenders read a warm tree, whatever the page cache dropped."""
    for d, _, names in os.walk(tree):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                f.read()


def tree_section(tmp: str, rounds: int, files: int, have_nc: bool, cmd: str) -> str:
    tree = make_small_tree(os.path.join(tmp, "treesrc"), files, TREE_DIRS, TREE_FILE_SIZE)
    os.sync()
    b = TreeBench(tree, tmp, files)

    def between() -> None:
        drop_dirty()
        warm_tree(tree)

    contenders: dict[str, Callable[[], Sample]] = {
        "zcopy send → zcopy recv (default: TLS 1.3)": lambda: b.zcopy(plain=False),
        "zcopy send --plain → zcopy recv --plain": lambda: b.zcopy(plain=True),
    }
    if have_nc:
        contenders["tar c | nc → nc | tar x"] = lambda: b.tar_nc(sync=False)
        contenders["tar c | nc → nc | tar x, then sync"] = lambda: b.tar_nc(sync=True)
    res = run_rounds(contenders, rounds, between=between)
    rows = []
    base = res.get("tar c | nc → nc | tar x, then sync")
    for name, r in res.items():
        rows.append([name.replace("|", "\\|"), f"{r.med('wall_s'):.2f}", f"{r.lo('wall_s'):.2f} – {r.hi('wall_s'):.2f}",
                     f"{r.med('wall_s') / base.med('wall_s'):.2f}×" if base else "–",
                     f"{files / r.med('wall_s'):,.0f}", f"{r.med('tx_cpu_s'):.2f}", f"{r.med('rx_cpu_s'):.2f}"])
    lines = []
    if have_nc:
        sync_, raw = res["tar c | nc → nc | tar x, then sync"], res["tar c | nc → nc | tar x"]
        for key, label in (("zcopy send → zcopy recv (default: TLS 1.3)", "default (TLS)"),
                           ("zcopy send --plain → zcopy recv --plain", "--plain")):
            z = res[key].med("wall_s")
            lines.append(f"zcopy {label}: **{z / sync_.med('wall_s'):.2f}×** tar|nc + sync (target ≤ 1.0×), "
                         f"**{z / raw.med('wall_s'):.2f}×** tar|nc without sync (aim ≤ 1.5×).")
    head = ["contender", "wall s (median)", "min – max", "vs tar\\|nc+sync", "files/s", "sender CPU s",
            "receiver CPU s"]
    return f"""### A tree of {files:,} × {TREE_FILE_SIZE // 1024} KiB files in {TREE_DIRS} directories

Command: `{cmd}`. Both ends as commands, receiver on CPU 1, sender on CPU 0, warm source tree (read before each
contender, after a `sync` of the previous one's writes); wall from the sender's start to the receiver's exit (and
the `sync`, where there is one); CPU per side from wait4 (process and its children). zcopy
makes every file durable before it names it (one `syncfs` per 2048 files) and verifies each one; `tar x` does
neither, hence the `sync` row. What zcopy reported: {json.dumps(b.summary)}.

{table(head, rows)}

{chr(10).join(lines)}
"""


# --- 1 GiB: encrypted vs --plain vs scp ----------------------------------------------------------------------
SSHD_CONFIG = """\
HostKey {key}
PidFile none
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {auth}
StrictModes no
Subsystem sftp internal-sftp
"""


def _ensure_ssh() -> str | None:
    """sshd and scp, installed with apt if missing (bench only: never in the core install or CI). Returns the
    sshd path or None."""
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if (sshd is None or not shutil.which("scp")) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server",
                        "openssh-client"], env=env, check=False, stdout=subprocess.DEVNULL)
        sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if sshd is not None and os.geteuid() == 0:
        # The privilege separation directory systemd would make when starting the (never started) ssh service.
        os.makedirs("/run/sshd", 0o755, exist_ok=True)
    return sshd if sshd and shutil.which("scp") else None


class ScpBench:
    """scp to 127.0.0.1 against an sshd in inetd mode (`sshd -i`, one per connection, spawned by this script on a
    127.0.0.1-only listener, CPU 1): its wait4 CPU is the whole receiving side (sshd, its SFTP server)."""

    def __init__(self, sshd: str, src: str, size: int, tmp: str) -> None:
        self.sshd, self.src, self.size, self.tmp = sshd, src, size, tmp
        self.dir = os.path.join(tmp, "ssh")
        os.mkdir(self.dir, 0o700)
        key, client = os.path.join(self.dir, "host_key"), os.path.join(self.dir, "client_key")
        for k in (key, client):  # throwaway keys, deleted with the temporary directory
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k], check=True)
        auth = os.path.join(self.dir, "authorized_keys")
        shutil.copy(client + ".pub", auth)
        self.config = os.path.join(self.dir, "sshd_config")
        with open(self.config, "w") as f:
            f.write(SSHD_CONFIG.format(key=key, auth=auth))
        self.client_key = client
        self._n = 0
        self.cipher = "?"

    def run(self) -> Split:
        self._n += 1
        dst = os.path.join(self.tmp, f"scp{self._n}.bin")
        with socket.create_server(("127.0.0.1", 0)) as srv:
            port = srv.getsockname()[1]
            t0 = time.perf_counter()
            tx = subprocess.Popen(["scp", "-q", "-i", self.client_key, "-P", str(port), "-o", "BatchMode=yes",
                                   "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                   "-o", "LogLevel=ERROR", self.src, f"root@127.0.0.1:{dst}"])
            conn, _ = srv.accept()
            with conn:
                rx = subprocess.Popen([*on_cpu1(), self.sshd, "-i", "-f", self.config], stdin=conn,
                                      stdout=conn, stderr=subprocess.DEVNULL)
            tx_cpu = _wait4(tx)
            rx_cpu = _wait4(rx)
        # scp's receiver has written the file but not fsynced it; every other contender's file is durable.
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        wall = time.perf_counter() - t0
        assert tx.returncode == 0 and os.path.getsize(dst) == self.size
        os.unlink(dst)
        return Split(wall, tx_cpu + rx_cpu, tx_cpu, rx_cpu)


def zcopy_split(src: str, size: int, tmp: str, plain: bool) -> Split:
    d = tempfile.mkdtemp(dir=tmp)
    peer, port = spawn_zcopy_recv(d, plain)
    t0 = time.perf_counter()
    tx = subprocess.Popen([*ZCOPY, "send", src, f"127.0.0.1:{port}", *(["--plain"] if plain else [])],
                          stdout=subprocess.DEVNULL)
    tx_cpu = _wait4(tx)
    rx_cpu = _wait4(peer)
    wall = time.perf_counter() - t0
    assert tx.returncode == 0 and peer.returncode == 0
    assert os.path.getsize(os.path.join(d, os.path.basename(src))) == size
    shutil.rmtree(d, ignore_errors=True)
    return Split(wall, tx_cpu + rx_cpu, tx_cpu, rx_cpu)


def scp_section(src: str, size: int, tmp: str, rounds: int, cmd: str) -> str:
    sshd = _ensure_ssh()
    contenders: dict[str, Callable[[], Sample]] = {
        "zcopy send → zcopy recv (TLS 1.3, xxh3)": lambda: zcopy_split(src, size, tmp, plain=False),
        "zcopy --plain (sendfile → O_DIRECT, xxh3)": lambda: zcopy_split(src, size, tmp, plain=True),
    }
    note = ""
    if sshd is not None:
        scp = ScpBench(sshd, src, size, tmp)
        contenders["scp to 127.0.0.1 (sshd -i), then fsync"] = scp.run
    else:
        note = "\nsshd/scp were not available (and could not be installed): no scp comparison in this run.\n"
    res = run_rounds(contenders, rounds, between=drop_dirty)
    base = res.get("scp to 127.0.0.1 (sshd -i), then fsync")
    rows = [[name, f"{r.med('wall_s'):.2f}", f"{r.lo('wall_s'):.2f} – {r.hi('wall_s'):.2f}",
             f"{r.med('wall_s') / base.med('wall_s'):.2f}×" if base else "–", f"{size / r.med('wall_s') / GiB:.2f}",
             f"{r.med('tx_cpu_s'):.2f}", f"{r.med('rx_cpu_s'):.2f}"] for name, r in res.items()]
    ratio = ""
    if base:
        z = res["zcopy send → zcopy recv (TLS 1.3, xxh3)"]
        ratio = (f"zcopy encrypted / scp: wall **{z.med('wall_s') / base.med('wall_s'):.2f}×** (target ≤ 1.0×), "
                 f"sender CPU {z.med('tx_cpu_s') / base.med('tx_cpu_s'):.2f}×, receiver CPU "
                 f"{z.med('rx_cpu_s') / base.med('rx_cpu_s'):.2f}×.")
    head = ["contender", "wall s (median)", "min – max", "vs scp", "GB/s", "sender CPU s", "receiver CPU s"]
    return f"""### One {size / MiB:.0f} MiB file: encrypted vs `--plain` vs scp
{note}
Command: `{cmd}`. Both ends as commands (receiver on CPU 1, sender on CPU 0), warm source, default checksum
(xxh3-128) and, for scp, its default cipher; every receiver's file is durable at the end (zcopy syncs before it
publishes; scp's file is fsynced by this script, inside the timing). CPU per side from wait4 (process and its
children; for scp's receiver: sshd and its SFTP server, which OpenSSH 9's scp speaks).

{table(head, rows)}

{ratio}
"""


def _wait_listening(port: int) -> None:
    """Poll /proc/net/tcp (untimed) until something listens on port: connecting would consume nc's one accept."""
    want = f":{port:04X} "
    for _ in range(2000):
        with open("/proc/net/tcp") as f:
            if any(want in line and line.split()[3] == "0A" for line in f):
                return
        time.sleep(0.001)
    raise RuntimeError(f"nothing listens on {port}")


def _ensure_nc() -> bool:
    if shutil.which("nc"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "netcat-openbsd"], env=env, check=False,
                       stdout=subprocess.DEVNULL)
    return shutil.which("nc") is not None


def checksum_cost(src: str, size: int, rounds: int) -> dict[str, Result]:
    """CPU of hashing the (warm) file, as the receiver does (over an mmap view) and as the sender does (pread
    into a reused 1 MiB buffer, safe against a source truncated under it)."""
    contenders: dict[str, Callable[[], Sample]] = {}
    for name in ("xxh3", "sha256"):
        algo = ck.ALGORITHMS[name]

        def mapped(algo: int = algo) -> Sample:
            with FileChannel.open(src) as ch:
                return timed(lambda: hashing.digest_mapped(algo, ch, size))

        def buffered(algo: int = algo) -> Sample:
            with FileChannel.open(src) as ch:
                return timed(lambda: hashing.digest_read(algo, ch, size))

        contenders[f"{name} over mmap (receiver)"] = mapped
        contenders[f"{name} via 1 MiB pread (sender)"] = buffered
    return run_rounds(contenders, rounds)


def _rows(results: dict[str, Result], size: int, attr: str, base: str | None, per_gb: bool) -> list[list[str]]:
    scale = GiB / size if per_gb else 1.0
    ref = results[base].med(attr) if base else 0.0
    return [
        [
            name,
            f"{r.med(attr) * scale:.3f}",
            f"{r.lo(attr) * scale:.3f} – {r.hi(attr) * scale:.3f}",
            f"{r.med(attr) / ref:.2f}×" if ref > 0 else "–",
            f"{size / r.med('wall_s') / GiB:.2f}",
        ]
        for name, r in results.items()
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="64 MiB, 3 rounds: proves the script works")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--only", choices=("plain", "tree", "scp"), help="run one part (default: all three)")
    ap.add_argument("--files", type=int, default=None, help=f"files in the tree (default {TREE_FILES:,})")
    ap.add_argument("--out", help="write a markdown section here")
    args = ap.parse_args(argv)
    size = args.size or (64 * MiB if args.quick else GiB)
    rounds = args.rounds or (3 if args.quick else 5)
    files = args.files or (2000 if args.quick else TREE_FILES)
    pin(0)
    have_nc = _ensure_nc()
    cmd = command_line("bench/transfer.py", argv)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [f"""## Transfer: zcopy send / recv ({when})

Machine: {machine()}; {other_work()}: read the min – max ranges.
"""]
    tmp = tempfile.mkdtemp(prefix="zcopy-bench-transfer-", dir=os.environ.get("ZCOPY_BENCH_DIR"))
    try:
        ended = "\nLoad average at the end of this part: {}.\n"
        if args.only in (None, "tree"):
            parts.append(tree_section(tmp, rounds, files, have_nc, cmd) + ended.format(load_average()))
        if args.only in (None, "scp"):
            src = os.path.join(tmp, "src.bin")
            make_file(src, size)
            os.sync()
            warm(src)
            parts.append(scp_section(src, size, tmp, rounds, cmd) + ended.format(load_average()))
        if args.only in (None, "plain"):
            parts.append(plain_section(tmp, size, rounds, have_nc, cmd) + ended.format(load_average()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(parts)
    write_report(text, args.out)
    return 0


def plain_section(tmp: str, size: int, rounds: int, have_nc: bool, cmd: str) -> str:
    src = os.path.join(tmp, "src.bin")
    if not os.path.exists(src):
        make_file(src, size)
        os.sync()
    warm(src)
    b = Bench(src, size, tmp)
    rx = run_rounds({
        RX_ZCOPY: lambda: b.zcopy_receiver("none"),
        RX_SAME: lambda: b.zcopy_receiver("none", route="readwrite"),
        "zcopy Receiver --cache (splice, xxh3)": lambda: b.zcopy_receiver("xxh3"),
        RX_DIRECT: lambda: b.zcopy_receiver("xxh3", cache=False),
        RX_PLAIN: b.plain_receiver,
    }, rounds, between=drop_dirty)
    tx = run_rounds({
        TX_ZCOPY: lambda: b.zcopy_sender("none"),
        TX_SAME: lambda: b.zcopy_sender("none", route="readwrite"),
        "zcopy send (sendfile, xxh3)": lambda: b.zcopy_sender("xxh3"),
        TX_PLAIN: b.plain_sender,
    }, rounds, between=drop_dirty)
    wall_contenders: dict[str, Callable[[], Sample]] = {
        "zcopy send → zcopy recv (xxh3)": lambda: b.zcopy_cli("xxh3"),
        "zcopy send → zcopy recv (none)": lambda: b.zcopy_cli("none"),
    }
    if have_nc:
        wall_contenders["nc → nc"] = lambda: b.nc(fsync=False)
        wall_contenders["nc → nc, then fsync"] = lambda: b.nc(fsync=True)
    wall = run_rounds(wall_contenders, rounds, between=drop_dirty)
    sums = checksum_cost(src, size, rounds)
    h_cpu = ["contender", "CPU s/GB (median)", "min – max", "vs baseline", "GB/s"]
    rx_same = rx[RX_ZCOPY].med("cpu_s") / rx[RX_SAME].med("cpu_s")
    rx_plain = rx[RX_ZCOPY].med("cpu_s") / rx[RX_PLAIN].med("cpu_s")
    rx_direct = rx[RX_DIRECT].med("cpu_s") / rx[RX_PLAIN].med("cpu_s")
    tx_same = tx[TX_ZCOPY].med("cpu_s") / tx[TX_SAME].med("cpu_s")
    tx_plain = tx[TX_ZCOPY].med("cpu_s") / tx[TX_PLAIN].med("cpu_s")
    routes = (f"routes used (from the channels' last_route): sender {', '.join(sorted(b.routes['sender']))}; "
              f"receiver {', '.join(sorted(b.routes['receiver']))}")
    if have_nc:
        wall_ratio = wall["zcopy send → zcopy recv (none)"].med("wall_s") / wall["nc → nc, then fsync"].med("wall_s")
        wall_raw = wall["zcopy send → zcopy recv (none)"].med("wall_s") / wall["nc → nc"].med("wall_s")
        wall_line = (f"zcopy (none) / nc+fsync = **{wall_ratio:.2f}×**, zcopy (none) / nc without fsync = "
                     f"**{wall_raw:.2f}×** (target ≤ 1×; zcopy fsyncs, verifies and renames before it exits).")
        wall_base: str | None = "nc → nc, then fsync"
    else:
        wall_line = "nc was not available (and could not be installed): no nc comparison in this run."
        wall_base = None
    h_wall = ["contender", "wall s (median)", "min – max", "vs nc+fsync", "GB/s"]
    # getrusage CPU is sampled per scheduler tick on many kernels (4 ms steps seen here): below ~256 MiB a
    # contender uses only a handful of ticks, so the ratios are coarse.
    coarse = ("\n**Coarse:** at this size each CPU figure is a few scheduler ticks; the 1 GiB run is the measurement."
              if size < 256 * MiB else "")
    return f"""### `--plain`: sender by sendfile (zero-copy); receiver by O_DIRECT or, with --cache, splice

Command: `{cmd}` (one {size / MiB:.0f} MiB file over 127.0.0.1, warm page cache, {rounds} rounds, order shuffled
per round, medians; measured side on CPU 0, CPU = its thread's user+sys (RUSAGE_THREAD); peer process on CPU 1;
every receiver fsyncs). {routes}.{coarse}

#### Receiver CPU (timed from accept to the end of the session, fsync and publish included)
The zcopy rows all face the same `zcopy send` and differ only in the body route (`--route readwrite` is
recv_into a 1 MiB buffer + pwrite); the plain receiver reads an 8-byte size then the bytes from a sendfile loop.
{table(h_cpu, _rows(rx, size, "cpu_s", RX_SAME, True))}

zcopy Receiver --cache (splice, checksum excluded) / the same receiver by recv_into+write = **{rx_same:.2f}×**;
/ the plain recv_into+write+fsync receiver = **{rx_plain:.2f}×** (target ≤ 0.7×). The default receiver (O_DIRECT from
its buffer, xxh3 computed there and included) / the plain receiver = **{rx_direct:.2f}×**.

#### Sender CPU (all face the same `zcopy recv`, except the plain sender: a recv_into+write+fsync receiver)
{table(h_cpu, _rows(tx, size, "cpu_s", TX_SAME, True))}

zcopy send (sendfile, checksum excluded) / the same sender by read+send (`--route readwrite`) =
**{tx_same:.2f}×**; / the plain read+sendall 64 KiB sender = **{tx_plain:.2f}×** (target ≤ 0.5×).

#### Wall time, both ends as commands (process start-up included; CPU column = both processes)
{table(h_wall, _rows(wall, size, "wall_s", wall_base, False))}

{wall_line}

#### Checksum cost per algorithm (same warm file, this process's CPU)
{table(h_cpu, _rows(sums, size, "cpu_s", None, True))}
"""


if __name__ == "__main__":
    sys.exit(main())
