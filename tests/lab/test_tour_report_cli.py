"""`zcopy tour --report DIR` (with a real tiny tour) and `--from tour.json` (re-rendering without measuring)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zcopy.cli import main
from zcopy.lab.schema import TOUR, check

FIXTURE = Path(__file__).parent / "data" / "tour.json"
TINY = ["tour", "--size", "1M", "--no-cold", "--repeats", "1"]


def test_report_with_json_on_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "report"  # parents are made
    assert main([*TINY, "--dir", str(tmp_path), "--json", "--report", str(out)]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout is the JSON alone
    assert check(doc, TOUR) == []
    assert all("model" in r for s in doc["steps"] for r in s["runs"])
    assert f"report: {out / 'index.html'}" in captured.err
    assert json.loads((out / "tour.json").read_text()) == doc
    page = (out / "index.html").read_text()
    for step in doc["steps"]:
        assert f"id='path-{step['id']}'" in page
    assert "--no-cold" in page and "--size 1M" in page  # the footer names the command that made it
    assert not [p for p in out.iterdir() if p.name.startswith(".zcopy-report-")]  # staging folder removed


def test_text_tour_suggests_a_command_that_runs(tmp_path: Path) -> None:
    """As after `make tour`: the venv's zcopy started by its path, `zcopy` not on PATH. The suggested command is
    run as printed, from the same directory, and draws the report; every line fits 80 columns (piped)."""
    zcopy = Path(sys.executable).parent / "zcopy"
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    env.pop("COLUMNS", None)
    assert shutil.which("zcopy", path=env["PATH"]) is None
    args = [str(zcopy), *TINY, "--dir", str(tmp_path)]
    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip().splitlines()
    command = lines[-1].strip()  # on a line of its own, never wrapped (its paths are as long as they are)
    assert max(len(line) for line in lines[:-1]) <= 80
    assert command.startswith(f"{zcopy} tour --size 1M --no-cold --repeats 1 --dir ") and "--report" in command
    r = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "tour-report" / "index.html").is_file()


def test_invocation_names_what_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zcopy.cli.tour import invocation

    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    script = venv_bin / "zcopy"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [".venv/bin/zcopy", "tour"])
    assert invocation() == ".venv/bin/zcopy"  # not on PATH: its path, as typed from here
    monkeypatch.setattr(sys, "argv", [str(script), "tour"])
    assert invocation() == ".venv/bin/zcopy"  # absolute under the current directory: shortened
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert invocation() == "zcopy"  # PATH finds this very program
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "zcopy").write_text("#!/bin/sh\n")
    (other / "zcopy").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}:{venv_bin}")
    assert invocation() == ".venv/bin/zcopy"  # PATH finds another zcopy: not that one
    monkeypatch.setattr(sys, "argv", [str(Path(zcopy_module_main())), "tour"])
    assert invocation().endswith(" -m zcopy")


def zcopy_module_main() -> str:
    import importlib.util

    spec = importlib.util.find_spec("zcopy.__main__")  # (importing it would run zcopy)
    assert spec is not None and spec.origin is not None
    return spec.origin


def test_from_redraws_without_measuring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["tour", "--report", str(out), "--from", str(FIXTURE)]) == 0
    saved = json.loads(FIXTURE.read_text())
    assert json.loads((out / "tour.json").read_text()) == saved
    assert saved["date"] in (out / "index.html").read_text()
    assert "report:" in capsys.readouterr().out
    # Drawing again into the same folder replaces the diagrams, leaving none of an earlier report behind.
    stale = out / "paths" / "9-old.svg"
    stale.write_text("<svg/>")
    assert main(["tour", "--report", str(out), "--from", str(FIXTURE)]) == 0
    assert not stale.exists()
    assert len(list((out / "paths").iterdir())) == len(saved["steps"])


def test_from_prints_the_text_tour_or_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tour", "--from", str(FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert "1. traditional" in out and "what the numbers show" in out
    assert main(["tour", "--from", str(FIXTURE), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(FIXTURE.read_text())


def _bad_docs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    saved: dict[str, Any] = json.loads(FIXTURE.read_text())
    no_runs = dict(saved, steps=[dict(saved["steps"][0], runs=[])])
    broken = json.loads(FIXTURE.read_text())
    del broken["steps"][2]["runs"][0]["counters"]["wall_s"]
    cases = {
        "missing": ("", "cannot read tour JSON"),
        "malformed": ('{"schema": "zcopy.tour/1", ', "cannot read tour JSON"),
        "not-json-object": ("[1, 2]", "not a zcopy tour JSON"),
        "bench": (json.dumps({"schema": "zcopy.bench/1"}), "not a zcopy tour JSON"),
        "schema": (json.dumps(broken), "$.steps[2].runs[0].counters.wall_s: missing"),
        "no-runs": (json.dumps(no_runs), "has no runs"),
        "binary": ("", "cannot read tour JSON"),  # written as invalid UTF-8 below
    }
    out = {}
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.json"
        if name == "binary":
            path.write_bytes(b"\xff\xfe\x00garbage")
        elif name != "missing":
            path.write_text(text)
        out[name] = (path, message)
    return out


def test_from_a_missing_or_malformed_json_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, (path, message) in _bad_docs(tmp_path).items():
        out = tmp_path / f"report-{name}"
        assert main(["tour", "--report", str(out), "--from", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("zcopy tour: error:") and message in err, (name, err)
        assert "Traceback" not in err
        assert not out.exists(), name  # nothing published


def test_from_refuses_measuring_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tour", "--from", str(FIXTURE), "--size", "8M", "--no-cold"]) == 2
    assert "--size, --no-cold do not apply" in capsys.readouterr().err


def test_an_unusable_report_dir_is_refused_before_measuring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main([*TINY, "--dir", str(tmp_path), "--report", str(afile)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no tour ran (its temp dir never appeared)
