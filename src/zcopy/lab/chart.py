"""The tour's side-by-side chart: CPU (user + sys, stacked) and wall time per path, a bar per run (cold, warm).
Pure: tour JSON in, SVG text out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from zcopy.lab import svg
from zcopy.lab.render import cpu_s, fmt_rate, fmt_secs

SYS, USER, WALL = "#0f766e", "#f59e0b", "#334155"

# Geometry (px in the viewBox): a label column, then two panels of the same width side by side.
LABEL_W = 190
PANEL_W = 400
GAP = 150  # room right of a bar for its value label
BAR_H = 15
ROW_GAP = 4
GROUP_GAP = 16
TOP = 58


def nice_max(value: float) -> tuple[float, float]:
    """(axis maximum, tick step): the step is 1, 2 or 5 × 10^k, about four ticks to the maximum."""
    if value <= 0:
        return 1e-3, 2.5e-4
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step), step


def _hatch_overlay(x: float, y: float, w: float, h: float) -> str:
    # Cold runs are hatched (not only lighter) so they stay apart in a black-and-white print.
    return svg.el("rect", x=round(x, 1), y=y, width=round(max(w, 0.0), 1), height=h, fill="url(#zc-cold-hatch)")


def _value_label(x0: float, bar_w: float, y: float, label: str) -> str:
    """The figure after its bar; inside the bar's end (white on the bar) when it would run into the next panel."""
    if bar_w + 6 + svg.width(label, 11) <= PANEL_W + GAP - 12:
        return svg.text(round(x0 + bar_w + 6, 1), y + BAR_H - 3, label, font_size=11, fill="#111827")
    return svg.text(round(x0 + bar_w - 6, 1), y + BAR_H - 3, label, font_size=11, font_weight=700, fill="#ffffff",
                    text_anchor="end", stroke="#1f2937", stroke_width=2.5, paint_order="stroke")  # fmt: skip


def _axis(x0: float, top: float, bottom: float, vmax: float, step: float, title: str) -> str:
    parts = [svg.text(x0, TOP - 30, title, font_size=14, font_weight=700, fill="#111827")]
    ticks = round(vmax / step)
    for i in range(ticks + 1):
        x = x0 + PANEL_W * i * step / vmax
        parts.append(svg.el("line", x1=round(x, 1), y1=top - 6, x2=round(x, 1), y2=bottom, stroke="#e5e7eb",
                            stroke_width=1))  # fmt: skip
        parts.append(svg.text(round(x, 1), top - 10, fmt_secs(i * step), text_anchor="middle", font_size=10.5,
                              fill="#6b7280"))  # fmt: skip
    return "".join(parts)


def draw(doc: Mapping[str, Any]) -> str:
    """Every step's runs as bars: left CPU (sys dark, user light, stacked), right wall time with MiB/s."""
    steps: Sequence[Mapping[str, Any]] = doc["steps"]
    rows = [(s, r) for s in steps for r in s["runs"]]
    cpu_max, cpu_step = nice_max(max((cpu_s(r["counters"]) for _, r in rows), default=0.0))
    wall_max, wall_step = nice_max(max((float(r["counters"]["wall_s"]) for _, r in rows), default=0.0))
    cpu_x = LABEL_W
    wall_x = LABEL_W + PANEL_W + GAP
    width = wall_x + PANEL_W + GAP
    stripe = svg.el("line", x1=0, y1=0, x2=0, y2=6, stroke="#ffffff", stroke_width=2.2, opacity=0.7)
    hatch = svg.el("pattern", stripe, id="zc-cold-hatch", width=6, height=6, patternUnits="userSpaceOnUse",
                   patternTransform="rotate(45)")  # fmt: skip
    parts: list[str] = [svg.el("defs", hatch)]
    y = TOP
    body: list[str] = []
    for step in steps:
        group_top = y
        for run in step["runs"]:
            c = run["counters"]
            mode = str(run["mode"])
            cold = mode == "cold"
            body.append(svg.text(LABEL_W - 12, y + BAR_H - 3, mode, text_anchor="end", font_size=11,
                                 fill="#6b7280"))  # fmt: skip
            user_w = PANEL_W * float(c["cpu_user_s"]) / cpu_max
            sys_w = PANEL_W * float(c["cpu_sys_s"]) / cpu_max
            bars = [
                svg.el("rect", x=cpu_x, y=y, width=round(sys_w, 1), height=BAR_H, fill=SYS),
                svg.el("rect", x=round(cpu_x + sys_w, 1), y=y, width=round(user_w, 1), height=BAR_H, fill=USER),
            ]
            if cold:
                bars.append(_hatch_overlay(cpu_x, y, sys_w + user_w, BAR_H))
            cpu_label = (f"{fmt_secs(cpu_s(c))}  (sys {fmt_secs(float(c['cpu_sys_s']))}, "
                         f"user {fmt_secs(float(c['cpu_user_s']))})")  # fmt: skip
            bars.append(_value_label(cpu_x, sys_w + user_w, y, cpu_label))
            wall_w = PANEL_W * float(c["wall_s"]) / wall_max
            bars.append(svg.el("rect", x=wall_x, y=y, width=round(wall_w, 1), height=BAR_H, fill=WALL))
            if cold:
                bars.append(_hatch_overlay(wall_x, y, wall_w, BAR_H))
            rate = fmt_rate(float(run["nbytes"]), float(c["wall_s"]))
            bars.append(_value_label(wall_x, wall_w, y, f"{fmt_secs(float(c['wall_s']))}  ({rate})"))
            body.append(svg.el("g", *bars, class_="bar", data_step=step["id"], data_mode=mode,
                               data_cpu_s=repr(cpu_s(c)), data_wall_s=repr(float(c["wall_s"]))))  # fmt: skip
            y += BAR_H + ROW_GAP
        mid = (group_top + y - ROW_GAP) / 2
        body.append(svg.text(12, mid + 5, str(step["id"]), font_size=13, font_weight=700, fill="#111827"))
        y += GROUP_GAP
        body.append(svg.el("line", x1=12, y1=y - GROUP_GAP / 2 - 2, x2=width - 12, y2=y - GROUP_GAP / 2 - 2,
                           stroke="#f1f2f4", stroke_width=1))  # fmt: skip
    bottom = y - GROUP_GAP
    parts.append(_axis(cpu_x, TOP, bottom, cpu_max, cpu_step, "CPU time of this process (sys + user)"))
    parts.append(_axis(wall_x, TOP, bottom, wall_max, wall_step, "wall time (and throughput)"))
    parts.extend(body)
    # Legend along the bottom.
    ly = bottom + 26
    keys = [(SYS, "CPU sys (kernel)"), (USER, "CPU user"), (WALL, "wall")]
    x = float(LABEL_W)
    for colour, name in keys:
        parts.append(svg.el("rect", x=x, y=ly - 11, width=14, height=14, fill=colour, rx=2))
        parts.append(svg.text(x + 20, ly, name, font_size=12, fill="#374151"))
        x += svg.width(name, 12) + 48
    parts.append(svg.el("rect", x=x, y=ly - 11, width=14, height=14, fill=WALL, rx=2))
    parts.append(_hatch_overlay(x, ly - 11, 14, 14))
    parts.append(svg.text(x + 20, ly, "hatched: cold run (page cache evicted first)", font_size=12, fill="#374151"))
    height = ly + 16
    return svg.document(width, height, svg.el("rect", width=width, height=height, fill="#ffffff"), *parts,
                        label="CPU and wall time per path, cold and warm")  # fmt: skip
