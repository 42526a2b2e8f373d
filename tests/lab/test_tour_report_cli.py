"""`zcopy tour --report DIR` (with a real tiny tour) and `--from tour.json` (re-rendering without measuring)."""

from __future__ import annotations

import json
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


def test_text_tour_suggests_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "--dir", str(tmp_path)]) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith("see it drawn: zcopy tour --report DIR")


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
    assert "── 1. traditional" in out and "what the numbers show" in out
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
