"""`zcopy recv` as a new user meets it (issue #21): a token made and printed with the exact send command, a warning
where anyone could write, a log line for people, progress on a terminal; and `zcopy send`'s own rough edges (a name
that does not resolve, --exclude, grammar)."""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from zcopy.cli import main
from zcopy.cli.progress import plural
from zcopy.cli.recv import summary_line
from zcopy.transfer import SessionResult
from zcopy.transfer import checksum as ck
from zcopy.transfer import protocol as p

from .conftest import ZCOPY, RawSender, assert_same_tree, make_tree


def _start(dst: Path, *args: str, stderr: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen([*ZCOPY, "recv", str(dst), "--listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env={k: v for k, v in os.environ.items() if k != "ZCOPY_TOKEN"})


def _lines_until(proc: subprocess.Popen[str], pattern: str, limit: int = 10) -> list[str]:
    assert proc.stderr is not None
    lines = []
    for _ in range(limit):
        lines.append(proc.stderr.readline())
        if re.search(pattern, lines[-1]):
            return lines
    raise AssertionError(f"{pattern!r} not in {lines}")


def test_without_a_token_one_is_made_and_the_printed_command_works(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", big=100_000)
    dst = tmp_path / "dst"
    dst.mkdir()
    recv = _start(dst, "--once")
    try:
        lines = _lines_until(recv, r"send with: ")
        assert "(token required)" in lines[0]
        command = lines[-1].split("send with: ", 1)[1].strip()
        env_part, _, rest = command.partition(" zcopy send ")
        assert env_part.startswith("ZCOPY_TOKEN=")
        token = shlex.split(env_part)[0].split("=", 1)[1]
        assert len(token) >= 24  # 144 bits, URL-safe base64
        argv = shlex.split(rest)
        assert argv[0] == "PATH..." and re.fullmatch(r"127\.0\.0\.1:\d+", argv[1])
        assert argv[2] == "--fingerprint" and argv[3].startswith("SHA256:")
        # Without the token the sender is turned away (and, --once, that ends nothing: a wrong guess does).
        env = {k: v for k, v in os.environ.items() if k != "ZCOPY_TOKEN"}
        r = subprocess.run([*ZCOPY, "send", str(tree), *argv[1:]], capture_output=True, text=True, timeout=60,
                           env=env)
        assert r.returncode == 1 and "requires a token" in r.stderr
        recv.wait(30)
        recv = _start(dst, "--once")
        lines = _lines_until(recv, r"send with: ")
        command = lines[-1].split("send with: ", 1)[1].strip()
        env_part, _, rest = command.partition(" zcopy send ")
        token = shlex.split(env_part)[0].split("=", 1)[1]
        argv = shlex.split(rest)
        r = subprocess.run([*ZCOPY, "send", str(tree), *argv[1:]], capture_output=True, text=True, timeout=60,
                           env={**env, "ZCOPY_TOKEN": token})
        assert r.returncode == 0, r.stderr
        _, err = recv.communicate(timeout=30)
        assert recv.returncode == 0, err
        assert_same_tree(tree, dst / "tree")
    finally:
        recv.kill()
        recv.wait()


def test_no_token_on_a_reachable_address_warns(tmp_path: Path) -> None:
    recv = subprocess.Popen([*ZCOPY, "recv", str(tmp_path), "--listen", "0.0.0.0:0", "--no-token", "--plain"],
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = _lines_until(recv, "warning")
        assert "anyone who can reach this port can write files into" in lines[-1] and "unencrypted" in lines[-1]
        assert "(token required)" not in lines[0]
    finally:
        recv.kill()
        recv.wait()
    # On loopback no warning: only this machine's users can connect.
    recv = _start(tmp_path, "--no-token")
    try:
        lines = _lines_until(recv, "send with: ")
        assert "ZCOPY_TOKEN" not in lines[-1]
        recv.send_signal(signal.SIGINT)
        _, rest = recv.communicate(timeout=30)
        assert "warning" not in "".join(lines) + rest
    finally:
        recv.kill()
        recv.wait()


def test_token_and_no_token_contradict(tmp_path: Path) -> None:
    r = subprocess.run([*ZCOPY, "recv", str(tmp_path), "--token", "x", "--no-token"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "contradict" in r.stderr and "Traceback" not in r.stderr


def test_the_session_line_is_for_people() -> None:
    res = SessionResult(peer="127.0.0.1:5000", files=1, bytes=1 << 30, seconds=0.5, skipped=2,
                        routes={"direct": (1 << 30) - 4096, "readwrite": 4096}, checksum="xxh3", encryption="tls1.3")
    line = summary_line(res)
    assert line.startswith("127.0.0.1:5000: 1 file, 1.0 GiB in 0.500 s (2.0 GiB/s)")
    assert "2 already there" in line and "routes: direct 1024.0 MiB, readwrite 4.0 KiB" in line
    assert "{" not in line
    assert plural(0, "file") == "0 files" and plural(1, "file") == "1 file" and plural(2, "file") == "2 files"


def test_a_host_that_does_not_resolve_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def no_dns(host: object, *a: object, **k: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert main(["send", str(f), "nosuch.example:9000", "--plain"]) == 2
    err = capsys.readouterr().err
    assert "cannot find host 'nosuch.example'" in err and "Name or service not known" in err
    assert "Traceback" not in err


def _read_pty(master: int, pattern: bytes, limit: float) -> bytes:
    out = b""
    end = time.monotonic() + limit
    while time.monotonic() < end and not re.search(pattern, out):
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                out += os.read(master, 65536)
            except OSError:
                break
    return out


def test_receiving_progress_on_a_terminal(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    master, slave = pty.openpty()
    # --cache: splice lands (and counts) the body as it comes; the direct route counts whole aligned blocks.
    recv = subprocess.Popen([*ZCOPY, "recv", str(dst), "--listen", "127.0.0.1:0", "--once", "--plain", "--no-token",
                             "--cache"], stderr=slave, stdout=subprocess.PIPE, text=True)
    os.close(slave)
    try:
        head = _read_pty(master, rb"listening on 127\.0\.0\.1:(\d+)", 30)
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", head)
        assert m, head
        raw = RawSender(("127.0.0.1", int(m.group(1))), ck.NONE)
        size = 16 << 20
        raw.send(raw.manifest((p.Entry(b"big.bin", False, size, 0o644, 0),)))
        raw.expect(p.PlanEnd)
        raw.send(p.FileStart(0, 0, size).encode() + b"\0" * (size // 2))  # half the body, then a pause
        screen = _read_pty(master, rb"50\.0%", 30)
        assert b"recv 127.0.0.1:" in screen and b"50.0%" in screen and b"8.0 MiB/16.0 MiB" in screen
        raw.finish()
        recv.wait(30)
    finally:
        os.close(master)
        recv.kill()
        recv.wait()
