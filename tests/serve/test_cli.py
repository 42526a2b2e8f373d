"""`zcopy serve` as a subprocess: start-up, SIGTERM with a response in flight, workers, access log, TLS."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import LOOPS, read_until_close, wait_for
from .tlsfiles import make_cert


class Proc:
    def __init__(self, root: Path, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "zcopy", "serve", str(root), "--port", "0", *args],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.p.stderr is not None
        self.line = line = self.p.stderr.readline()
        m = re.search(r"https?://([\d.]+):(\d+)/ .*route=(\w+) loop=(\w+)", line)
        assert m, line
        self.addr = (m.group(1), int(m.group(2)))
        self.route = m.group(3)

    def stop(self) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(15)
        finally:
            if self.p.poll() is None:
                self.p.kill()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


def test_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "zcopy", "serve", str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2 and "not a directory" in r.stderr and "Traceback" not in r.stderr
    # As uvicorn: the certificate file may hold the key too, so --tls-cert/--ssl-certfile alone is fine; a key
    # alone is not.
    r = subprocess.run(
        [sys.executable, "-m", "zcopy", "serve", str(tmp_path), "--tls-cert", "x"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "cannot read TLS certificate x" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "zcopy", "serve", str(tmp_path), "--tls-key", "x"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "--ssl-keyfile needs --ssl-certfile" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "zcopy", "serve", str(tmp_path), "--disk-threads", "0"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "--disk-threads must be at least 1" in r.stderr and "Traceback" not in r.stderr
    # A time bound that is not a positive number of seconds (a negative --header-timeout cut every connection at
    # the first sweep, 50 ms in) or a negative count is refused, as nginx refuses it.
    for option, value, message in (
        ("--header-timeout", "-1", "--header-timeout must be more than 0 seconds"),
        ("--handshake-timeout", "0", "--handshake-timeout must be more than 0 seconds"),
        ("--body-timeout", "-1", "--body-timeout must be more than 0 seconds"),
        ("--send-timeout", "0", "--send-timeout must be more than 0 seconds"),
        ("--grace", "-1", "--grace must be at least 0 seconds"),
        ("--cache-valid", "-1", "--cache-valid must be at least 0 seconds"),
        ("--cache-entries", "-1", "--cache-entries must be at least 0"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "zcopy", "serve", str(tmp_path), option, value, "--port", "0"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (option, r.stderr)


def test_startup_line_says_how_to_list_directories(site: Path, procs: list[Proc]) -> None:
    procs.append(Proc(site))
    assert "listing=off (--list-dirs to list directories)" in procs[-1].line
    procs.append(Proc(site, "--list-dirs"))
    assert " listing=on " in procs[-1].line
    c = http.client.HTTPConnection(*procs[-1].addr, timeout=5)
    c.request("GET", "/nodir/")
    resp = c.getresponse()
    assert resp.status == 200 and b"Last modified" in resp.read()


def test_sigterm_finishes_in_flight_and_exits_0(site: Path, procs: list[Proc]) -> None:
    with open(site / "big.bin", "wb") as f:
        f.truncate(32 << 20)
    p = Proc(site, "--loop", "asyncio")
    procs.append(p)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.connect(p.addr)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.recv(65536)
    p.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    rest = read_until_close(s, 10)
    assert len(first.partition(b"\r\n\r\n")[2]) + len(rest) == 32 << 20
    assert p.p.wait(10) == 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def test_workers_share_the_port_and_stop_on_sigterm(site: Path, procs: list[Proc]) -> None:
    p = Proc(site, "--workers", "2")
    procs.append(p)
    assert wait_for(lambda: len(_children(p.p.pid)) == 2)
    kids = _children(p.p.pid)
    for _ in range(20):
        c = http.client.HTTPConnection(*p.addr, timeout=5)
        c.request("GET", "/hello.txt")
        assert c.getresponse().read() == b"hello world\n"
        c.close()
    assert p.stop() == 0
    assert not any(os.path.exists(f"/proc/{k}") and Path(f"/proc/{k}/stat").read_text().split()[2] != "Z" for k in kids)


def test_access_log_clf_and_sighup_reopen(site: Path, tmp_path: Path, procs: list[Proc]) -> None:
    log = tmp_path / "access.log"
    p = Proc(site, "--access-log-file", str(log))
    procs.append(p)
    c = http.client.HTTPConnection(*p.addr, timeout=5)
    c.request("GET", "/hello.txt?q=1")
    c.getresponse().read()
    c.request("GET", "/missing")
    c.getresponse().read()
    assert wait_for(lambda: log.exists() and log.read_text().count("\n") == 2)
    lines = log.read_text().splitlines()
    clf = r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET (\S+) HTTP/1\.1" (\d{3}) (\d+|-)$'
    m0, m1 = re.match(clf, lines[0]), re.match(clf, lines[1])
    assert m0 and m0.group(2) == "200" and m0.group(3) == "12"
    assert m1 and m1.group(1) == "/missing" and m1.group(2) == "404"
    os.rename(log, tmp_path / "access.log.1")
    p.p.send_signal(signal.SIGHUP)
    assert wait_for(log.exists)
    c.request("GET", "/hello.txt")
    c.getresponse().read()
    assert wait_for(lambda: log.read_text().count("\n") == 1)


def test_json_log(site: Path, tmp_path: Path, procs: list[Proc]) -> None:
    import json

    log = tmp_path / "a.jsonl"
    p = Proc(site, "--access-log-file", str(log), "--json-log")
    procs.append(p)
    c = http.client.HTTPConnection(*p.addr, timeout=5)
    c.request("GET", "/data.bin")
    c.getresponse().read()
    assert wait_for(lambda: log.exists() and log.read_text().endswith("\n"))
    rec = json.loads(log.read_text().splitlines()[0])
    assert rec["status"] == 200 and rec["bytes"] == 1 << 20 and rec["route"] == "sendfile"


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_serves_correctly_and_reports_the_copy_route(
    site: Path, tmp_path: Path, procs: list[Proc], loop: str
) -> None:
    cert, key = make_cert(tmp_path)  # skips, saying so, when openssl is missing
    log = tmp_path / "tls.log"
    p = Proc(
        site, "--tls-cert", str(cert), "--tls-key", str(key), "--access-log-file", str(log), "--json-log",
        "--loop", loop,
    )  # fmt: skip
    procs.append(p)
    assert p.route == "readwrite"  # never claim zero-copy over TLS
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection(*p.addr, timeout=10, context=ctx)
    c.request("GET", "/data.bin")
    resp = c.getresponse()
    assert resp.read() == bytes(range(256)) * 4096
    c.request("GET", "/data.bin", headers={"Range": "bytes=1-2,10-11"})
    resp = c.getresponse()
    body = resp.read()
    assert resp.status == 206 and b"Content-Range: bytes 1-2/1048576" in body
    c.request("GET", "/hello.txt", headers={"Range": "bytes=0-4"})
    assert c.getresponse().read() == b"hello"
    assert wait_for(lambda: log.exists() and log.read_text().count("\n") == 3)
    assert '"route": "readwrite"' in log.read_text().splitlines()[0]


def test_dead_worker_is_replaced(site: Path, procs: list[Proc]) -> None:
    p = Proc(site, "--workers", "2")
    procs.append(p)
    assert wait_for(lambda: len(_children(p.p.pid)) == 2)
    victim = _children(p.p.pid)[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: len(_children(p.p.pid)) == 2 and victim not in _children(p.p.pid), 10)
    for _ in range(10):
        c = http.client.HTTPConnection(*p.addr, timeout=5)
        c.request("GET", "/hello.txt")
        assert c.getresponse().read() == b"hello world\n"
        c.close()
    assert p.stop() == 0
