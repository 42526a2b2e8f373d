"""`zcopy replace` end to end: real files, the real CLI entry point in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zcopy.cli import main


def test_exit_codes_changed_nomatch_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"an old cat\n")
    assert main(["replace", "old", "new", str(p)]) == 0
    out = capsys.readouterr().out
    assert "1 matches" in out and "in-place mmap" in out
    assert p.read_bytes() == b"an new cat\n"
    assert main(["replace", "old", "new", str(p)]) == 1
    assert "no match" in capsys.readouterr().out
    assert main(["replace", "new", "x", str(p), str(tmp_path / "missing")]) == 2  # one file failed
    captured = capsys.readouterr()
    assert "missing" in captured.err and "No such file" in captured.err
    assert p.read_bytes() == b"an x cat\n"  # the good file was still processed


def test_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    for args in (["(", "x", "--regex"], ["", "x"], ["a", "bb", "--in-place"], ["a", "b", "--count", "-1"],
                 ["a", "b", "--encoding", "nope"]):
        proc = subprocess.run([sys.executable, "-m", "zcopy", "replace", *args, str(p)], capture_output=True,
                              text=True)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("zcopy replace: error:"), proc.stderr
        assert "Traceback" not in proc.stderr
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "zcopy", "replace", "a", "b", str(fifo)], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr
    assert p.read_bytes() == b"abc"


def test_json_dry_run_count_ignore_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"Old OLD old old")
    assert main(["replace", "-i", "--count", "3", "--dry-run", "--json", "old", "older", str(p)]) == 0
    doc = json.loads(capsys.readouterr().out)
    (f,) = doc["files"]
    assert (f["matches"], f["size_after"], f["route"], f["changed"]) == (3, 15 + 6, "rewrite", False)
    assert p.read_bytes() == b"Old OLD old old"
    assert main(["replace", "-i", "--count", "3", "old", "older", str(p)]) == 0
    assert p.read_bytes() == b"older older older old"


def test_regex_group_references_and_backup(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x=1\ny=22\n")
    assert main(["replace", "--regex", "--backup", ".bak", r"(\w)=(\d+)", r"\2=\1", str(p)]) == 0
    assert p.read_bytes() == b"1=x\n22=y\n"
    assert (tmp_path / "f.bak").read_bytes() == b"x=1\ny=22\n"


def test_encoding_turns_text_into_the_files_bytes(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes("grüße old".encode("utf-16-le"))
    assert main(["replace", "--encoding", "utf-16-le", "grüße", "hallo", str(p)]) == 0
    assert p.read_bytes().decode("utf-16-le") == "hallo old"
