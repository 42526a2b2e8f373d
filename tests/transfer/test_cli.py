"""`zcopy send` / `zcopy recv` as real subprocesses: JSON summaries, exit codes, user errors, progress on TTY."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from zcopy import _sys
from zcopy.cli import UserError
from zcopy.cli.send import parse_address

from .conftest import ZCOPY, assert_same_tree, direct_here, make_tree, spawn_recv


def test_parse_address() -> None:
    assert parse_address("example.org:9000") == ("example.org", 9000)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address("0", default_host="127.0.0.1") == ("127.0.0.1", 0)
    for bad in ("nohost", "host:port", "h:99999"):
        with pytest.raises(UserError):
            parse_address(bad)


@pytest.mark.parametrize("plain,cache", [(True, True), (True, False), (False, False), (False, True)])
def test_send_recv_json_names_the_routes_and_encryption_each_side_used(tmp_path: Path, plain: bool,
                                                                       cache: bool) -> None:
    tree = make_tree(tmp_path / "src", big=1 << 20)
    dst = tmp_path / "dst"
    dst.mkdir()
    flag = ["--plain"] if plain else []
    recv, port = spawn_recv(dst, "--once", "--json", *flag, *(["--cache"] if cache else []))
    out = subprocess.run([*ZCOPY, "send", str(tree), f"127.0.0.1:{port}", "--json", "--checksum", "sha256", *flag],
                         capture_output=True, text=True, timeout=60)
    rout, rerr = recv.communicate(timeout=30)
    assert out.returncode == 0 and recv.returncode == 0, (out.stderr, rerr)
    summary = json.loads(out.stdout)
    rsum = json.loads(rout)
    total = summary["bytes_total"]
    big = 1 << 20  # big.bin; every other file of make_tree is at most 300,000 bytes...
    big += sum(f.stat().st_size for f in tree.rglob("*") if f.is_file() and f.stat().st_size > (64 << 10)
               and f.name != "big.bin")  # ...and those above 64 KiB also take the zero-copy path in plain mode
    assert summary["files"] == 15 and summary["checksum"] == "sha256" and summary["bytes_sent"] == total
    assert summary["encryption"] == rsum["encryption"] == ("none" if plain else "tls1.3")
    # Large files: by O_DIRECT from the received buffer (the default, where the file system does direct I/O),
    # else through the page cache: splice in plain mode, a copy with TLS. Small files: batched copies.
    direct = not cache and direct_here(dst)
    large_rx = "direct" if direct else "splice" if plain and _sys.HAS_SPLICE else "readwrite"
    expected_rx = {large_rx: big, "readwrite": total - big} if large_rx != "readwrite" else {"readwrite": total}
    assert summary["routes"]["receiver"] == expected_rx == rsum["routes"]
    if plain:
        assert summary["routes"]["sender"] == {"sendfile": big, "readwrite": total - big}
        assert rsum["zero_copy"] is False  # the small files were batched through user space
    else:  # encrypted: copied through user space, never claimed as sendfile/splice or zero-copy
        assert summary["routes"]["sender"] == {"readwrite": total}
        assert summary["zero_copy"] is False and rsum["zero_copy"] is False
    assert rsum["files"] == 15 and rsum["error"] is None
    assert "ETA" not in out.stderr  # not a terminal: no progress bar
    assert_same_tree(tree, dst / "tree")


def test_user_mistakes_are_clear_errors_without_traceback(tmp_path: Path) -> None:
    cases = [
        (["send", str(tmp_path / "missing"), "127.0.0.1:9"], "no such file"),
        (["send", str(tmp_path), "nohostport"], "not HOST:PORT"),
        (["recv", str(tmp_path / "missing"), "--once"], "not an existing directory"),
        # A stall bound that is not a positive number of seconds (recv took -1 and each session died in a thread
        # with a traceback; send said only "Timeout value out of range").
        (["send", str(tmp_path), "127.0.0.1:9", "--timeout", "-1"], "--timeout"),
        (["send", str(tmp_path), "127.0.0.1:9", "--timeout", "0"], "--timeout"),
        (["recv", str(tmp_path), "--once", "--timeout", "-1"], "--timeout"),
        (["recv", str(tmp_path), "--once", "--timeout", "0"], "--timeout"),
    ]
    # A port nobody listens on: bound by us and never listened on, so it refuses connections and nobody else
    # can take it while the cases run (a port closed and assumed free could be).
    import socket

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    free = held.getsockname()[1]
    cases.append((["send", str(tmp_path), f"127.0.0.1:{free}"], "nothing listens"))
    # A forced route that cannot move these kinds is refused before any connection or listening socket.
    cases.append((["send", str(tmp_path), f"127.0.0.1:{free}", "--route", "copy_file_range"], "copy_file_range"))
    cases.append((["recv", str(tmp_path), "--once", "--route", "sendfile"], "sendfile"))
    # A zero-copy route forced on an encrypted session is refused, not silently ignored.
    cases.append((["send", str(tmp_path), f"127.0.0.1:{free}", "--route", "sendfile"], "only chooses"))
    cases.append((["recv", str(tmp_path), "--once", "--route", "splice"], "only chooses"))
    with held:
        for argv, message in cases:
            r = subprocess.run([*ZCOPY, *argv], capture_output=True, text=True, timeout=30)
            assert r.returncode == 2, (argv, r.stderr)
            assert message in r.stderr and "Traceback" not in r.stderr


def test_route_readwrite_on_both_sides_is_the_plain_copying_path(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", big=1 << 20)
    dst = tmp_path / "dst"
    dst.mkdir()
    recv, port = spawn_recv(dst, "--once", "--json", "--route", "readwrite", "--plain")
    out = subprocess.run([*ZCOPY, "send", str(tree), f"127.0.0.1:{port}", "--json", "--route", "readwrite",
                          "--plain"],
                         capture_output=True, text=True, timeout=60)
    rout, rerr = recv.communicate(timeout=30)
    assert out.returncode == 0 and recv.returncode == 0, (out.stderr, rerr)
    summary = json.loads(out.stdout)
    total = summary["bytes_total"]
    assert summary["routes"] == {"sender": {"readwrite": total}, "receiver": {"readwrite": total}}
    assert json.loads(rout)["user_bytes"] == 2 * total  # recv_into + write: each body byte crossed twice
    assert_same_tree(tree, dst / "tree")


def test_wrong_token_fails_both_sides_and_writes_nothing(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", big=1000)
    dst = tmp_path / "dst"
    dst.mkdir()
    env = {**os.environ, "ZCOPY_TOKEN": "sesame"}
    recv, port = spawn_recv(dst, "--once", env=env)
    r = subprocess.run([*ZCOPY, "send", str(tree), f"127.0.0.1:{port}", "--token", "guess"],
                       capture_output=True, text=True, timeout=30)
    _, rerr = recv.communicate(timeout=30)
    assert r.returncode == 1 and recv.returncode == 1
    assert "authentication failed: wrong token" in r.stderr and "wrong token" in rerr
    assert "Traceback" not in r.stderr + rerr
    assert list(dst.iterdir()) == []
    recv, port = spawn_recv(dst, "--once", env=env)
    r = subprocess.run([*ZCOPY, "send", str(tree), f"127.0.0.1:{port}"], capture_output=True, text=True,
                       timeout=30, env=env)
    recv.communicate(timeout=30)
    assert r.returncode == 0 and recv.returncode == 0
    assert_same_tree(tree, dst / "tree")


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(4 << 20))
    dst = tmp_path / "dst"
    dst.mkdir()
    recv, port = spawn_recv(dst, "--once")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([*ZCOPY, "send", str(src), f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                                stderr=slave, text=True)
        os.close(slave)
        out, _ = proc.communicate(timeout=30)
        tty = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            tty += chunk
    finally:
        os.close(master)
    recv.communicate(timeout=30)
    assert proc.returncode == 0
    assert b"ETA" in tty and b"100.0%" in tty and b"send [tls1.3]" in tty
    assert "1 file," in out and "encryption tls1.3" in out and "not zero-copy" in out


def test_recv_without_once_keeps_serving_sessions(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    recv, port = spawn_recv(dst)
    try:
        for i in range(2):
            f = tmp_path / f"f{i}.txt"
            f.write_text(f"session {i}\n")
            r = subprocess.run([*ZCOPY, "send", str(f), f"127.0.0.1:{port}"], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 0, r.stderr
        assert recv.poll() is None
    finally:
        recv.send_signal(signal.SIGINT)
        _, err = recv.communicate(timeout=30)
    assert recv.returncode == 130 and "interrupted" in err
    assert sorted(p.name for p in dst.iterdir()) == ["f0.txt", "f1.txt"]


_SYSCALL = re.compile(r"^(?:\[pid\s+\d+\] |\d+ +)?(\w+)\(.*\) = (\d+)")
_COPYING = {"read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2",
            "recvfrom", "sendto", "recvmsg", "sendmsg"}


def _bytes_by_syscall(log: Path, keep: Callable[[str], bool]) -> dict[str, int]:
    """Sum of return values per syscall name, for calls whose line (fds named by strace -y) satisfies `keep`."""
    out: dict[str, int] = {}
    for line in log.read_text().splitlines():
        m = _SYSCALL.match(line)
        if m and keep(line):
            out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
    return out


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed (.ci/run installs it)")
@pytest.mark.parametrize("algo", ["none", "xxh3"])
def test_strace_zero_copy_both_sides_and_publish_order(tmp_path: Path, algo: str) -> None:
    src = tmp_path / "body.bin"
    size = 8 << 20
    src.write_bytes(os.urandom(size))
    dst = tmp_path / "dst"
    dst.mkdir()
    calls = "trace=" + ",".join(sorted(_COPYING | {"sendfile", "splice"}))
    publish = ",fsync,fdatasync,syncfs,link,linkat,rename,renameat,renameat2,unlink,unlinkat,mmap"
    rlog, slog = tmp_path / "recv.strace", tmp_path / "send.strace"
    recv = subprocess.Popen(["strace", "-f", "-y", "-e", calls + publish, "-o", str(rlog), *ZCOPY, "recv", str(dst),
                             "--listen", "127.0.0.1:0", "--once", "--plain", "--cache", "--no-token"],
                            stderr=subprocess.PIPE, text=True)
    assert recv.stderr is not None
    line = recv.stderr.readline()
    while "listening on" not in line:  # strace may print its own lines first
        line = recv.stderr.readline()
        assert line, "recv did not start"
    port = int(line.split("127.0.0.1:")[1].split(",")[0])
    r = subprocess.run(["strace", "-f", "-y", "-e", calls, "-o", str(slog), *ZCOPY, "send", str(src),
                        f"127.0.0.1:{port}", "--checksum", algo, "--plain"], capture_output=True, text=True,
                       timeout=60)
    recv.communicate(timeout=60)
    assert r.returncode == 0 and recv.returncode == 0, r.stderr
    assert (dst / "body.bin").read_bytes() == src.read_bytes()

    def on_socket(line: str) -> bool:
        return "<socket:" in line

    def on_file(line: str) -> bool:  # the source file or the partial file
        return "body.bin>" in line or ".body.bin.zcopy-part>" in line

    assert _bytes_by_syscall(slog, on_socket).get("sendfile", 0) == size
    assert _bytes_by_syscall(rlog, lambda s: on_socket(s) or on_file(s)).get("splice", 0) == 2 * size
    # Only the protocol's frames (a few hundred bytes) crossed user space through the socket, either side.
    for log in (slog, rlog):
        sock = _bytes_by_syscall(log, on_socket)
        assert sum(n for name, n in sock.items() if name in _COPYING) < 4096, sock
    # The receiver never reads its file back through a buffer: the checksum is computed over a mapping.
    assert not any(n for name, n in _bytes_by_syscall(rlog, on_file).items() if name in _COPYING)
    # The sender's only file reads are the checksum pass (pread into a reused buffer, SIGBUS-safe).
    src_reads = sum(n for name, n in _bytes_by_syscall(slog, on_file).items() if name in _COPYING)
    assert src_reads == (size if algo != "none" else 0)

    # The publishing order, as the kernel saw it: body → verify over a mapping → syncfs (the batch's one sync) →
    # rename without replacing (renameat2 RENAME_NOREPLACE) → fsync(directory). The final name exists only after
    # the data is verified and durable.
    lines = rlog.read_text().splitlines()

    def first(pred: Callable[[str], bool]) -> int:
        return next(i for i, line in enumerate(lines) if pred(line))

    last_splice = max(i for i, line in enumerate(lines) if "splice(" in line and "zcopy-part>" in line)
    sync = first(lambda s: "syncfs(" in s)
    publish_at = first(lambda s: ("renameat2(" in s or "linkat(" in s) and '"body.bin"' in s)
    fsync_dir = first(lambda s: re.search(rf"\bfsync\(\d+<{re.escape(str(dst))}>\)", s) is not None)
    assert last_splice < sync < publish_at < fsync_dir
    if algo != "none":  # verified over an mmap of the whole partial, before the sync and the rename
        mapped = first(lambda s: s.startswith(tuple("0123456789")) and f"mmap(NULL, {size}," in s
                       and ".body.bin.zcopy-part>" in s)
        assert last_splice < mapped < sync
