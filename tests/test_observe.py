"""observe: what it records, checked against strace and against known byte counts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Drain, make_file

from zcopy import FileChannel, SocketChannel, observe
from zcopy.observe import Observer, begin, read_meminfo, read_proc_io, record

STRACE = shutil.which("strace")
SIZE = 64 << 20  # the 64 MiB

SENDER = r"""
import json, os, sys
from zcopy import FileChannel, SocketChannel, observe
path, port, route, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with FileChannel.open(path) as ch, SocketChannel.open(("127.0.0.1", port)) as sc:
    os.access("/zcopy-mark-start", os.F_OK)  # markers in the strace log around the measured call
    with observe() as obs:
        n = ch.transfer_to(0, ch.size(), sc, route=route)
    os.access("/zcopy-mark-end", os.F_OK)
    fds = [ch.fileno(), sc.fileno()]
with open(out, "w") as f:
    json.dump({"n": n, "route": ch.last_route, "syscalls": obs.totals.syscalls,
               "user_bytes": obs.totals.user_bytes, "fds": fds}, f)
"""

_LINE = re.compile(r"^(\w+)\((\d+),.*\)\s+=\s+(-?\d+)")


def _strace_sender(tmp_path: Path, route: str) -> tuple[dict[str, object], dict[str, int], dict[str, int]]:
    """Run a sender under strace; return its observe report, strace call counts and bytes per syscall on its fds."""
    assert STRACE is not None
    make_file(tmp_path / "src", SIZE)
    drain = Drain(keep=False)
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    out, log = tmp_path / "out.json", tmp_path / "strace.log"
    cmd = [STRACE, "-o", str(log), "-e", "trace=sendfile,splice,read,write,readv,writev,pread64,preadv2,pwrite64,"
           "sendto,recvfrom,sendmsg,recvmsg,copy_file_range,access,faccessat,faccessat2",
           sys.executable, str(script), str(tmp_path / "src"), str(drain.address[1]), route, str(out)]
    subprocess.run(cmd, check=True, timeout=120)
    drain.wait()
    assert drain.count == SIZE
    report = json.loads(out.read_text())
    fds = set(report["fds"])
    calls: dict[str, int] = {}
    data_bytes: dict[str, int] = {}
    text = log.read_text()
    window = text[text.index("/zcopy-mark-start") : text.index("/zcopy-mark-end")]
    for line in window.splitlines()[1:]:
        m = _LINE.match(line)
        if not m:
            continue
        name, fd, ret = m.group(1), int(m.group(2)), int(m.group(3))
        if name in ("sendfile", "splice", "copy_file_range") or fd in fds:
            calls[name] = calls.get(name, 0) + 1
            if name not in ("sendfile", "splice", "copy_file_range") and ret > 0:
                data_bytes[name] = data_bytes.get(name, 0) + ret
    return report, calls, data_bytes


@pytest.mark.skipif(STRACE is None, reason="strace not installed (.ci/run installs it)")
def test_sendfile_moves_64mib_with_no_read_or_write_of_the_data(tmp_path: Path) -> None:
    report, calls, data_bytes = _strace_sender(tmp_path, "sendfile")
    assert report["n"] == SIZE and report["route"] == "sendfile"
    assert data_bytes == {}, f"data crossed user space: {data_bytes}"
    assert calls.get("sendfile", 0) >= 1
    assert report["syscalls"]["sendfile"] == calls["sendfile"]  # type: ignore[index]
    assert report["user_bytes"] == 0


@pytest.mark.skipif(STRACE is None, reason="strace not installed (.ci/run installs it)")
def test_splice_counts_match_strace(tmp_path: Path) -> None:
    report, calls, data_bytes = _strace_sender(tmp_path, "splice")
    assert report["route"] == "splice" and data_bytes == {}
    assert report["syscalls"]["splice"] == calls["splice"]  # type: ignore[index]


@pytest.mark.skipif(STRACE is None, reason="strace not installed (.ci/run installs it)")
def test_readwrite_counts_and_user_bytes_match_strace(tmp_path: Path) -> None:
    report, calls, data_bytes = _strace_sender(tmp_path, "readwrite")
    syscalls = report["syscalls"]
    assert isinstance(syscalls, dict)
    assert syscalls["preadv2"] == calls["preadv2"] and syscalls["write"] == calls["write"]
    assert data_bytes["preadv2"] == SIZE and data_bytes["write"] == SIZE
    assert report["user_bytes"] == 2 * SIZE


def test_operations_and_totals(tmp_path: Path, drain: Drain) -> None:
    make_file(tmp_path / "src", 1 << 20)
    with FileChannel.open(tmp_path / "src") as ch, SocketChannel(drain.connect()) as sc, observe() as obs:
        ch.transfer_to(0, 1 << 20, sc)
        ch.transfer_to(0, 1000, sc, route="mmap")
        data = ch.read(4096, position=0)
        burn = time.process_time() + 0.05  # 50 ms of CPU inside the observed interval: the totals must show it
        while time.process_time() < burn:
            pass
    ops = obs.operations
    assert [(o.op, o.route, o.nbytes) for o in ops] == [
        ("transfer_to", "sendfile", 1 << 20),
        ("transfer_to", "mmap", 1000),
        ("read", "readwrite", 4096),
    ]
    assert ops[0].user_bytes == 0 and ops[1].user_bytes == 1000 and ops[2].user_bytes == len(data)
    assert ops[0].mode_switches == 2 * ops[0].syscall_count > 0
    t = obs.totals
    assert t.nbytes == (1 << 20) + 1000 + 4096 and t.user_bytes == 1000 + 4096
    assert t.routes == {"sendfile": 1 << 20, "mmap": 1000, "readwrite": 4096}
    assert t.wall_s > 0 and t.usage.cpu_user_s + t.usage.cpu_sys_s >= 0.04  # the 50 ms burnt, 20 % slack
    summary = obs.summary()
    assert json.loads(json.dumps(summary))["totals"]["nbytes"] == t.nbytes


def test_fallback_is_visible_in_observe(tmp_path: Path) -> None:
    src = os.open("/proc/self/status", os.O_RDONLY)
    with open(tmp_path / "dst", "wb") as f, FileChannel(src, own=True) as ch, observe() as obs:
        ch.transfer_to(0, 1 << 20, f)
    op = obs.operations[0]
    assert op.route != "copy_file_range" and op.skipped and op.skipped[0][0] == "copy_file_range"


def test_nothing_recorded_outside_observe(tmp_path: Path) -> None:
    assert begin() is None
    record("x", "y", 1)  # a no-op, not an error
    with observe() as obs:
        assert begin() is not None
        record("serve", "sendfile", 10, syscalls={"sendfile": 1})
    assert begin() is None
    assert [(o.op, o.nbytes) for o in obs.operations] == [("serve", 10)]


def test_observe_is_the_class_and_module_helpers() -> None:
    assert issubclass(observe, Observer)
    assert observe.record is record and observe.begin is begin


def test_disk_and_dirty_counters(tmp_path: Path) -> None:
    assert "Dirty" in read_meminfo()
    io = read_proc_io()
    if not io:
        pytest.skip("no /proc/self/io (kernel without task I/O accounting)")
    from zcopy.lab.tour import fs_type

    kind = fs_type(tmp_path)
    if kind not in ("ext4", "xfs", "btrfs"):  # tmpfs (a common TMPDIR) has no storage layer to count
        pytest.skip(f"temp dir on {kind}: no disk writes to count")
    with observe() as obs, FileChannel.open(tmp_path / "f", "w") as ch:
        ch.write(b"x" * (8 << 20))
        ch.force()
    assert obs.totals.disk_write_bytes >= 8 << 20
    assert obs.operations[-1].op == "force" and obs.operations[-1].route == "fsync"


def test_zcopy_observe_is_the_class_whatever_was_imported_first() -> None:
    code = (
        "import zcopy.observe, zcopy.routes, zcopy.mapped\n"
        "from zcopy import observe\n"
        "import zcopy\n"
        "assert isinstance(observe, type) and zcopy.observe is observe, observe\n"
        "with observe() as obs: pass\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
