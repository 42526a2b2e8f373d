"""What fits a terminal: compact tour and bench output at a given width, and the bench summary's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from zcopy.lab import compact, render

FIXTURE = Path(__file__).parent / "data" / "tour.json"


def tour_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(FIXTURE.read_text())
    return doc


@pytest.mark.parametrize("width", [40, 80, 120])
def test_tour_fits_the_width_and_keeps_every_sentence(width: int) -> None:
    doc = tour_doc()
    text = compact.tour(doc, width)
    assert max(len(line) for line in text.splitlines()) <= width
    flat = " ".join(text.split())
    for _, sentence in render.conclusions(doc):
        assert " ".join(sentence.split()) in flat  # wrapped, never cut
    assert "path" in text and "wall" in text and "CPU" in text  # the columns that matter most survive
    assert max(len(line) for line in render.comparison_table(doc).splitlines()) > 120  # what --wide shows


def test_tour_table_drops_columns_by_priority() -> None:
    wide = compact.tour_table(tour_doc(), 200).splitlines()[0].split()
    assert wide == ["path", "run", "route", "wall", "CPU", "syscalls", "user-space", "disk", "read", "disk", "write",
                    "faults"]  # fmt: skip
    narrow = compact.tour_table(tour_doc(), 60).splitlines()[0].split()
    assert narrow == ["path", "run", "wall", "CPU", "user-space"]


def result(scenario: str, route: str, size: int, mib: float, cpu: float, used: str | None = None) -> dict[str, Any]:
    def s(x: float) -> dict[str, float]:
        return {"median": x, "min": x, "max": x, "n": 1}

    return {"scenario": scenario, "route": route, "route_used": used or route, "size": size, "iterations": 1,
            "wall_s": s(1.0), "cpu_s": s(1.0), "mib_per_s": s(mib), "cpu_s_per_gib": s(cpu), "user_bytes": 0,
            "syscall_count": 1}  # fmt: skip


def bench_doc() -> dict[str, Any]:
    routes = ["sendfile", "mmap", "readwrite"]
    res = [
        result("fs", "readwrite", 4096, 100, 1.0), result("fs", "sendfile", 4096, 200, 0.5),
        result("fs", "mmap", 4096, 50, 2.0), result("fs", "readwrite", 16384, 100, 1.0),
        result("fs", "sendfile", 16384, 800, 0.5), result("fs", "mmap", 16384, 900, 0.1, used="readwrite"),
        result("fs", "readwrite", 1 << 20, 1000, 1.0), result("fs", "sendfile", 1 << 20, 500, 2.0),
        result("fs", "mmap", 1 << 20, 900, 1.0),
    ]  # fmt: skip
    return {"scenarios": [{"id": "fs", "title": "file → socket", "routes": routes}], "results": res, "notes": []}


def test_bench_summary_best_route_per_size_class_against_the_control() -> None:
    (line,) = compact.bench_summary(bench_doc())
    # small: sendfile 2× and 8× readwrite → geometric mean 4×; mmap fell back at 16 KiB, so it is no candidate
    assert "small (< 64 KiB): sendfile, 4.00× readwrite's MiB/s (2.00–8.00), 0.50× its CPU per GiB" in line
    # medium: both routes are slower than the control: it says so, and names the best other
    assert "medium (64 KiB – < 16 MiB): readwrite itself; the best other, mmap, 0.90× its MiB/s" in line
    assert "large" not in line  # no size of that class was measured


@pytest.mark.parametrize("width", [40, 80])
def test_bench_fits_and_marks_fallbacks(width: int) -> None:
    text = compact.bench(bench_doc(), width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "900*" in text and "fell back" in text  # a fallback's numbers are marked, not passed off
    assert "── summary" in text


def test_bench_leaves_out_routes_it_cannot_fit_and_says_so() -> None:
    text = compact.bench_tables(bench_doc(), 24)
    header = next(line for line in text.splitlines() if line.startswith("MiB/s")).split()
    assert header[:2] == ["MiB/s", "readwrite"]  # the control stays beside the size
    assert "left out to fit 24 columns: --wide shows all" in " ".join(text.split())
