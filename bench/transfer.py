"""Transfer benchmark: `zcopy send`/`recv` against plain Python senders/receivers and `nc`, over 127.0.0.1.

Side by side in one run, warm page cache, medians of N rounds with the contenders' order shuffled each round.
The measured side runs in this process pinned to CPU 0 (CPU = that thread's user+sys, RUSAGE_THREAD); the peer
is a separate process pinned to CPU 1. Checksums are excluded from the CPU ratios (--checksum none) and their
cost is reported separately, per algorithm. Every receiver fsyncs what it wrote, as zcopy recv does.
Usage: python bench/transfer.py [--quick] [--size BYTES] [--rounds N] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

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
    run_rounds,
    table,
    thread_cpu,
    timed,
    warm,
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
RX_ZCOPY = "zcopy Receiver (splice, checksum none)"
RX_SAME = "zcopy Receiver --route readwrite (recv_into + pwrite)"
RX_PLAIN = "plain recv_into + write 1 MiB + fsync"
TX_ZCOPY = "zcopy send (sendfile, checksum none)"
TX_SAME = "zcopy send --route readwrite (pread + send)"
TX_PLAIN = "plain read + sendall 64 KiB"
_LISTEN = re.compile(r"listening on [0-9.]+:(\d+)")


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


def _on_cpu1() -> list[str]:
    return ["taskset", "-c", "1"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


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
    def zcopy_receiver(self, algo: str, route: str | None = None) -> Sample:
        d = self._fresh_dir()
        with Receiver(d, ("127.0.0.1", 0), route=route) as rx:
            peer = subprocess.Popen([*_on_cpu1(), *ZCOPY, "send", self.src, f"127.0.0.1:{rx.address[1]}",
                                     "--checksum", algo], stdout=subprocess.DEVNULL)
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
            peer = subprocess.Popen([*_on_cpu1(), sys.executable, "-c", PLAIN_SENDER, self.src, str(port)])
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
    def _spawn_zcopy_recv(self, d: str) -> tuple[subprocess.Popen[str], int]:
        peer = subprocess.Popen([*_on_cpu1(), *ZCOPY, "recv", d, "--listen", "127.0.0.1:0", "--once"],
                                stderr=subprocess.PIPE, text=True)
        assert peer.stderr is not None
        m = _LISTEN.search(peer.stderr.readline())
        assert m, "zcopy recv did not start"
        return peer, int(m.group(1))

    def zcopy_sender(self, algo: str, route: str | None = None) -> Sample:
        d = self._fresh_dir()
        peer, port = self._spawn_zcopy_recv(d)
        c0, t0 = thread_cpu(), time.perf_counter()
        res = send([self.src], ("127.0.0.1", port), checksum_name=algo, route=route)
        sample = Sample(time.perf_counter() - t0, thread_cpu() - c0)
        peer.wait()
        assert res.ok and res.bytes_sent == self.size, res
        if route is None:
            self.routes["sender"].update(res.routes)
        self._clean(d)
        return sample

    def plain_sender(self) -> Sample:
        d = self._fresh_dir()
        peer = subprocess.Popen([*_on_cpu1(), sys.executable, "-c", PLAIN_RECEIVER, os.path.join(d, "f")],
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
        subprocess.run([*ZCOPY, "send", self.src, f"127.0.0.1:{port}", "--checksum", algo], check=True,
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
            peer = subprocess.Popen([*_on_cpu1(), "nc", "-l", "127.0.0.1", str(port)], stdout=out)
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
    ap.add_argument("--out", help="write a markdown section here")
    args = ap.parse_args(argv)
    size = args.size or (64 * MiB if args.quick else GiB)
    rounds = args.rounds or (3 if args.quick else 5)
    _pin(0)
    have_nc = _ensure_nc()
    tmp = tempfile.mkdtemp(prefix="zcopy-bench-transfer-", dir=os.environ.get("ZCOPY_BENCH_DIR"))
    try:
        src = os.path.join(tmp, "src.bin")
        make_file(src, size)
        os.sync()
        warm(src)
        b = Bench(src, size, tmp)
        rx = run_rounds({
            RX_ZCOPY: lambda: b.zcopy_receiver("none"),
            RX_SAME: lambda: b.zcopy_receiver("none", route="readwrite"),
            "zcopy Receiver (splice, xxh3)": lambda: b.zcopy_receiver("xxh3"),
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cmd = command_line("bench/transfer.py", argv)
    h_cpu = ["contender", "CPU s/GB (median)", "min – max", "vs baseline", "GB/s"]
    rx_same = rx[RX_ZCOPY].med("cpu_s") / rx[RX_SAME].med("cpu_s")
    rx_plain = rx[RX_ZCOPY].med("cpu_s") / rx[RX_PLAIN].med("cpu_s")
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
    text = f"""## Transfer: zcopy send / recv ({when})

Machine: {machine()}; load average at end {load_average()}.
Command: `{cmd}` (one {size / MiB:.0f} MiB file over 127.0.0.1, warm page cache, {rounds} rounds, order shuffled
per round, medians; measured side on CPU 0, CPU = its thread's user+sys (RUSAGE_THREAD); peer process on CPU 1;
every receiver fsyncs). {routes}.{coarse}

### Receiver CPU (timed from accept to the end of the session, fsync and publish included)
The zcopy rows all face the same `zcopy send` and differ only in the body route (`--route readwrite` is
recv_into a 1 MiB buffer + pwrite); the plain receiver reads an 8-byte size then the bytes from a sendfile loop.
{table(h_cpu, _rows(rx, size, "cpu_s", RX_SAME, True))}

zcopy Receiver (splice, checksum excluded) / the same receiver by recv_into+write = **{rx_same:.2f}×**;
/ the plain recv_into+write+fsync receiver = **{rx_plain:.2f}×** (target ≤ 0.7×).

### Sender CPU (all face the same `zcopy recv`, except the plain sender: a recv_into+write+fsync receiver)
{table(h_cpu, _rows(tx, size, "cpu_s", TX_SAME, True))}

zcopy send (sendfile, checksum excluded) / the same sender by read+send (`--route readwrite`) =
**{tx_same:.2f}×**; / the plain read+sendall 64 KiB sender = **{tx_plain:.2f}×** (target ≤ 0.5×).

### Wall time, both ends as commands (process start-up included; CPU column = both processes)
{table(h_wall, _rows(wall, size, "wall_s", wall_base, False))}

{wall_line}

### Checksum cost per algorithm (same warm file, this process's CPU)
{table(h_cpu, _rows(sums, size, "cpu_s", None, True))}
"""
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
