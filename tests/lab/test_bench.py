"""bench with tiny sizes over real loopback sockets and files; JSON schema; counters per route."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zcopy.cli import main
from zcopy.lab.bench import SCENARIOS, BenchOptions, run_bench
from zcopy.lab.schema import BENCH, check

SIZES = [4096, 65536]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    seen: list[tuple[int, int, str]] = []
    opts = BenchOptions(sizes=SIZES, repeats=2, sample_bytes=256 * 1024, workdir=tmp_path_factory.mktemp("b"),
                        progress=lambda done, total, label: seen.append((done, total, label)))  # fmt: skip
    doc = run_bench(opts)
    doc["_progress"] = seen
    return doc


def test_schema_and_every_cell(bench: dict[str, Any]) -> None:
    assert check(bench, BENCH) == []
    cells = {(r["scenario"], r["route"], r["size"]) for r in bench["results"]}
    for scen in SCENARIOS.values():
        for route in scen.routes:
            for size in SIZES:
                assert (scen.id, route, size) in cells or any(route in n and scen.id in n for n in bench["notes"])


def test_medians_lie_between_min_and_max(bench: dict[str, Any]) -> None:
    for r in bench["results"]:
        for key in ("wall_s", "cpu_s", "mib_per_s", "cpu_s_per_gib"):
            s = r[key]
            assert s["min"] <= s["median"] <= s["max"] and s["n"] == 2
        assert r["mib_per_s"]["median"] > 0


def test_user_bytes_per_route(bench: dict[str, Any]) -> None:
    res = {(r["scenario"], r["route"], r["size"]): r for r in bench["results"]}
    for size in SIZES:
        assert res[("file-socket", "sendfile", size)]["user_bytes"] == 0
        assert res[("file-socket", "readwrite", size)]["user_bytes"] == 2 * size
        assert res[("file-file", "copy_file_range", size)]["route_used"] == "copy_file_range"
        assert res[("socket-file", "splice", size)]["user_bytes"] == 0


def test_progress_reaches_the_plan(bench: dict[str, Any]) -> None:
    seen = bench["_progress"]
    assert seen and all(total == seen[0][1] for _, total, _ in seen)
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    rounds = {label for _, _, label in seen}
    assert "file-socket 4.0 KiB sendfile" in rounds


def test_cli_json_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "--scenario", "file-socket", "--route", "sendfile", "--route", "readwrite",
               "--min-size", "4K", "--max-size", "16K", "--repeats", "1", "--sample-bytes", "64K",
               "--dir", str(tmp_path), "--json", "-"])  # fmt: skip
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert check(doc, BENCH) == []
    assert {r["route"] for r in doc["results"]} == {"sendfile", "readwrite"}
    assert sorted({r["size"] for r in doc["results"]}) == [4096, 16384]


def test_cli_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "--scenario", "file-file", "--min-size", "4K", "--max-size", "4K", "--repeats", "1",
               "--sample-bytes", "16K", "--dir", str(tmp_path)])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "file-file: file → file" in out and "copy_file_range" in out and "── summary" in out


def test_cli_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--min-size", "1G", "--max-size", "4K"]) == 2
    assert main(["bench", "--max-size", "huge"]) == 2
    assert "zcopy bench: error:" in capsys.readouterr().err


def test_cli_renders_from_json(tmp_path: Path, bench: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "b.json"
    src.write_text(json.dumps({k: v for k, v in bench.items() if k != "_progress"}))
    assert main(["bench", "--from", str(src)]) == 0
    assert "file-socket: file → loopback socket" in capsys.readouterr().out
    for columns in (None, "60", "200"):  # piped: 80; a terminal's $COLUMNS otherwise
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": columns} if columns else {})
        r = subprocess.run([sys.executable, "-m", "zcopy", "bench", "--from", str(src)], env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        lines = r.stdout.splitlines()
        assert r.returncode == 0 and max(map(len, lines)) <= int(columns or 80), r.stdout
        summary = lines[lines.index(next(x for x in lines if x.startswith("── summary"))) + 1 :]
        assert summary[0].startswith("• file-socket: small (< 64 KiB): ")  # best route per size class ...
        assert "× readwrite's MiB/s" in r.stdout or "readwrite itself" in r.stdout  # ... against the control
    wide = subprocess.run([sys.executable, "-m", "zcopy", "bench", "--from", str(src), "--wide"],
                          capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    assert "sendfile CPU s/GiB" in wide and "• file-socket: small" in wide
    (tmp_path / "bad.json").write_text("{}")
    assert main(["bench", "--from", str(tmp_path / "bad.json")]) == 2
