"""`zcopy cp` as a user runs it: a real subprocess, exit codes, messages, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import make_file


def zcopy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zcopy", *args], capture_output=True, text=True, timeout=60)


def test_cp_json(tmp_path: Path) -> None:
    data = make_file(tmp_path / "a", 100_000)
    r = zcopy("cp", str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["bytes"] == len(data) and out["route"] == "copy_file_range" and out["skipped"] == []
    assert (tmp_path / "b").read_bytes() == data


def test_cp_text_names_route_and_fallbacks(tmp_path: Path) -> None:
    r = zcopy("cp", "/proc/self/status", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    assert "copied by readwrite" in r.stdout and "fell back from copy_file_range" in r.stdout


def test_cp_forced_route(tmp_path: Path) -> None:
    make_file(tmp_path / "a", 10_000)
    r = zcopy("cp", str(tmp_path / "a"), str(tmp_path / "b"), "--route", "splice", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["route"] == "splice"


def test_cp_errors_are_clear_without_traceback(tmp_path: Path) -> None:
    cases = [
        (["cp", str(tmp_path / "missing"), str(tmp_path / "b")], "no such file"),
        (["cp", str(tmp_path), str(tmp_path / "b")], "is a directory"),
        (["cp", "/proc/self/status", str(tmp_path / "b"), "--route", "copy_file_range"], "unavailable"),
        (["cp", "/etc/hostname", str(tmp_path / "nodir" / "b")], "does not exist"),
    ]
    for args, message in cases:
        r = zcopy(*args)
        assert r.returncode == 2, (args, r)
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


def test_cp_bad_route_name_is_a_usage_error(tmp_path: Path) -> None:
    r = zcopy("cp", "a", "b", "--route", "teleport")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_version_and_help() -> None:
    assert zcopy("--version").stdout.startswith("zcopy ")
    r = zcopy("--help")
    assert r.returncode == 0 and "cp" in r.stdout


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    # `zcopy cp ... --json | head -0` style: nobody reads stdout (the pipe has no reader at all).
    make_file(tmp_path / "a", 1000)
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "zcopy", "cp", str(tmp_path / "a"), str(tmp_path / "b"), "--json"],
                           stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert p.returncode == 141 and "Traceback" not in p.stderr, p.stderr


def test_cp_empty_file_by_the_first_route_without_a_fallback(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    for extra in ([], ["--no-fallback"], ["--route", "copy_file_range"]):
        dst = tmp_path / f"out{len(extra)}"
        r = zcopy("cp", str(tmp_path / "empty"), str(dst), "--json", *extra)
        assert r.returncode == 0, (extra, r.stderr)
        out = json.loads(r.stdout)
        assert (out["bytes"], out["route"], out["skipped"]) == (0, "copy_file_range", []), extra
        assert dst.read_bytes() == b""


def test_cp_sync_single_file(tmp_path: Path) -> None:
    data = make_file(tmp_path / "a", 10_000)
    r = zcopy("cp", "--sync", "--json", str(tmp_path / "a"), str(tmp_path / "b"))
    assert r.returncode == 0 and json.loads(r.stdout)["synced"] is True
    assert (tmp_path / "b").read_bytes() == data
    r = zcopy("cp", "--sync", str(tmp_path / "a"), str(tmp_path / "c"))
    assert r.returncode == 0 and "synced" in r.stdout
