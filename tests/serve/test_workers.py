"""Process supervision: configuration errors before forking, restart back-off and its limit, signals, grace."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .tlsfiles import make_cert

ZCOPY = [sys.executable, "-m", "zcopy", "serve"]


def run_serve(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    # The timeout is a hang detector: every case here ends on its own in well under a second.
    return subprocess.run([*ZCOPY, *args], capture_output=True, text=True, timeout=timeout)


class Proc:
    """`zcopy serve` with N workers; waits for every worker's start-up line."""

    def __init__(self, root: Path, *args: str, workers: int = 2, cmd: list[str] | None = None) -> None:
        argv = cmd or [*ZCOPY, str(root), "--port", "0", "--workers", str(workers), *args]
        self.p = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        assert self.p.stderr is not None
        self.lines: list[str] = []
        pids = set()
        while len(pids) < workers:
            line = self.p.stderr.readline()
            assert line, self.lines
            self.lines.append(line)
            m = re.search(r"https?://([\d.]+):(\d+)/ .*pid=(\d+)", line)
            if m:
                self.addr = (m.group(1), int(m.group(2)))
                pids.add(int(m.group(3)))
        self.pids = pids

    def rest_of_stderr(self) -> str:
        assert self.p.stderr is not None
        return "".join(self.lines) + self.p.stderr.read()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.p.poll() is None:
            p.p.kill()
        p.p.wait()


def children(pid: int) -> set[int]:
    try:
        return {int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


def get(addr: tuple[str, int], path: str = "/hello.txt") -> bytes:
    c = http.client.HTTPConnection(*addr, timeout=10)
    c.request("GET", path)
    body = c.getresponse().read()
    c.close()
    return body


def test_missing_certificate_with_workers_exits_at_once_naming_it(site: Path) -> None:
    """Fault: 30 "worker failed ... starting another" lines in 3 s, never exiting."""
    r = run_serve(str(site), "--port", "0", "--workers", "2", "--tls-cert", "/nonexistent.pem", "--tls-key", "/k")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        "zcopy serve: error: cannot read TLS certificate /nonexistent.pem: No such file or directory"
    )


def test_single_process_names_the_real_cause(site: Path, tmp_path: Path) -> None:
    """Fault: a missing certificate was reported as "cannot serve on 127.0.0.1:0"."""
    r = run_serve(str(site), "--port", "0", "--tls-cert", "/nonexistent.pem", "--tls-key", "/k")
    assert r.returncode == 2 and "cannot read TLS certificate /nonexistent.pem" in r.stderr, r.stderr
    assert "cannot serve on" not in r.stderr
    cert, _key = make_cert(tmp_path)
    r = run_serve(str(site), "--port", "0", "--tls-cert", str(cert), "--tls-key", str(site / "hello.txt"))
    assert r.returncode == 2 and f"cannot load TLS certificate {cert}" in r.stderr, r.stderr
    r = run_serve(str(site), "--port", "0", "--tls-cert", str(cert), "--tls-key", "/nonexistent.key")
    assert r.returncode == 2 and "cannot read TLS key /nonexistent.key" in r.stderr, r.stderr
    r = run_serve(str(site), "--port", "0", "--workers", "2", "--access-log-file", str(tmp_path / "no" / "log"))
    assert r.returncode == 2 and "cannot open access log" in r.stderr, r.stderr
    with socket.socket() as busy:  # a port somebody listens on without SO_REUSEPORT: nobody can join it
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for workers in ("1", "3"):
            r = run_serve(str(site), "--port", port, "--workers", workers)
            assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_worker_failing_at_start_backs_off_then_stops_the_server(site: Path, procs: list[Proc]) -> None:
    p = Proc(site)
    procs.append(p)
    shutil.rmtree(site)  # from now on a new worker cannot start: its root is gone
    for pid in p.pids:
        os.kill(pid, signal.SIGKILL)
    assert p.p.wait(20) == 1  # the old server restarted forever: this wait timed out
    err = p.rest_of_stderr()
    delays = [float(x) for x in re.findall(r"starting another in ([\d.]+) s", err)]
    assert delays == [0.1, 0.2, 0.4, 0.8], err  # doubling back-off, then the limit (5 in a row)
    last = err.strip().splitlines()[-1]
    assert "failed 5 times in a row" in last and "not a directory" in last, err


def test_sighup_without_access_log_keeps_the_workers(site: Path, procs: list[Proc]) -> None:
    p = Proc(site)
    procs.append(p)
    for pid in p.pids:  # each worker catches SIGHUP (its default action would be to terminate)
        caught = int(re.search(r"SigCgt:\s*([0-9a-f]+)", Path(f"/proc/{pid}/status").read_text())[1], 16)
        assert caught & (1 << (signal.SIGHUP - 1)), pid
    p.p.send_signal(signal.SIGHUP)  # forwarded to the workers
    assert get(p.addr) == b"hello world\n"
    assert children(p.p.pid) == p.pids
    p.p.send_signal(signal.SIGTERM)
    assert p.p.wait(20) == 0
    assert "starting another" not in p.rest_of_stderr()


def test_every_worker_serves(site: Path, procs: list[Proc]) -> None:
    p = Proc(site)
    procs.append(p)
    before = {pid: _sockets(pid) for pid in p.pids}
    conns = []
    for _ in range(40):  # the kernel hashes each 4-tuple to one worker: all 40 on one has odds 2^-39
        c = http.client.HTTPConnection(*p.addr, timeout=10)
        c.request("GET", "/hello.txt")
        assert c.getresponse().read() == b"hello world\n"
        conns.append(c)  # kept open, so each worker's share shows in its fd table
    held = {pid: _sockets(pid) - before[pid] for pid in p.pids}
    assert sum(held.values()) == 40 and all(n > 0 for n in held.values()), held
    for c in conns:
        c.close()
    p.p.send_signal(signal.SIGTERM)
    assert p.p.wait(20) == 0


def _sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def test_worker_ignoring_sigterm_is_killed_after_grace(site: Path, procs: list[Proc]) -> None:
    # exit_slack is not a flag: run the supervisor with a short one instead of waiting the default 5 s.
    code = (
        "import sys; from zcopy.serve.workers import Options, run; "
        f"sys.exit(run(Options(root={str(site)!r}, port=0, workers=2, grace=0.2, exit_slack=0.3)))"
    )
    p = Proc(site, cmd=[sys.executable, "-c", code])
    procs.append(p)
    stuck = min(p.pids)
    os.kill(stuck, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM: only SIGKILL ends it
    p.p.send_signal(signal.SIGTERM)
    assert p.p.wait(20) == 1
    err = p.rest_of_stderr()
    assert f"worker(s) {stuck} still running" in err and "killing them" in err, err
    assert not children(p.p.pid)
