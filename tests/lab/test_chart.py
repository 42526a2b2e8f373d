"""The CPU/wall chart: one bar group per run of every path, lengths proportional to the JSON's numbers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from zcopy.lab import chart
from zcopy.lab.render import cpu_s, fmt_secs

# A real `zcopy tour --json` run (default 256 MiB) on the project's machine (ext4, kernel 6.18, 2 CPUs): every
# path, route and counter in it is one the tour really produced, the O_DIRECT step included.
TOUR_JSON = Path(__file__).parent / "data" / "tour.json"


@pytest.fixture
def saved_tour() -> dict[str, Any]:
    return json.loads(TOUR_JSON.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


SVG = "{http://www.w3.org/2000/svg}"


def test_a_bar_per_run_with_the_runs_numbers(saved_tour: dict[str, Any]) -> None:
    root = ET.fromstring(chart.draw(saved_tour))
    bars = [g for g in root.iter(f"{SVG}g") if g.get("class") == "bar"]
    runs = [(s["id"], r) for s in saved_tour["steps"] for r in s["runs"]]
    assert [(g.attrib["data-step"], g.attrib["data-mode"]) for g in bars] == [(sid, r["mode"]) for sid, r in runs]
    cpu_max, _ = chart.nice_max(max(cpu_s(r["counters"]) for _, r in runs))
    wall_max, _ = chart.nice_max(max(r["counters"]["wall_s"] for _, r in runs))
    for g, (_, run) in zip(bars, runs, strict=True):
        c = run["counters"]
        assert float(g.attrib["data-cpu-s"]) == cpu_s(c) and float(g.attrib["data-wall-s"]) == c["wall_s"]
        rects = g.findall(f"{SVG}rect")
        sys_w, user_w, wall_w = float(rects[0].attrib["width"]), float(rects[1].attrib["width"]), None
        wall_w = next(float(r.attrib["width"]) for r in rects[2:] if r.attrib.get("fill") == chart.WALL)
        assert sys_w == pytest.approx(chart.PANEL_W * c["cpu_sys_s"] / cpu_max, abs=0.06)
        assert user_w == pytest.approx(chart.PANEL_W * c["cpu_user_s"] / cpu_max, abs=0.06)
        assert wall_w == pytest.approx(chart.PANEL_W * c["wall_s"] / wall_max, abs=0.06)
        labels = [t.text or "" for t in g.iter(f"{SVG}text")]
        assert labels[0].startswith(fmt_secs(cpu_s(c))) and labels[1].startswith(fmt_secs(c["wall_s"]))
        hatched = any(r.attrib.get("fill") == "url(#zc-cold-hatch)" for r in rects)
        assert hatched == (run["mode"] == "cold")


@pytest.mark.parametrize("value,expected", [
    (0.117, (0.15, 0.05)), (0.0368, (0.04, 0.01)), (1.0, (1.0, 0.5)), (3.2, (4.0, 1.0)), (0.0, (1e-3, 2.5e-4)),
])  # fmt: skip
def test_nice_max(value: float, expected: tuple[float, float]) -> None:
    top, step = chart.nice_max(value)
    assert top == pytest.approx(expected[0]) and step == pytest.approx(expected[1])
    assert top >= value
