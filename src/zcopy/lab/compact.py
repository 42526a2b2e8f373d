"""What a terminal of a given width shows of a tour or a bench (pure): a compact table, the computed sentences
wrapped to the width, and for bench a summary (the best route per size class against the read/write control).
The full tables stay in render.py, shown with --wide, and are in --json and the reports."""

from __future__ import annotations

import math
import shutil
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from zcopy.lab import render
from zcopy.lab.render import fmt_bytes, fmt_secs

Doc = Mapping[str, Any]

MIN_WIDTH = 40
CONTROL = "readwrite"  # the read/write loop every zero-copy route is compared against


def terminal_width() -> int:
    """The columns of the terminal on stdout, or 80 when it is not a terminal ($COLUMNS wins, as for ls)."""
    return max(MIN_WIDTH, shutil.get_terminal_size((80, 24)).columns)


def wrap(text: str, width: int, first: str = "", rest: str | None = None) -> list[str]:
    """``text`` filled to ``width`` with ``first`` before the first line and ``rest`` (default: spaces as wide as
    ``first``) before the others; words longer than a line (paths) are split rather than overflow."""
    rest = " " * len(first) if rest is None else rest
    return textwrap.wrap(
        text, width, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False
    ) or [first.rstrip()]


def rule(title: str, width: int) -> str:
    """``── title ────`` across the width (a title longer than the width is wrapped, its last line ruled)."""
    lines = wrap(title, width - 4, first="── ", rest="   ")
    last = lines[-1] + " "
    return "\n".join([*lines[:-1], last + "─" * max(0, width - len(last))])


def fit_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[bool],
    width: int,
    priority: Sequence[int],
) -> str:
    """render.text_table with as many columns as fit in ``width``, taken in ``priority`` order (column indices;
    the kept ones stay in their own order). The first priority column is always kept."""
    table = ""
    for keep_n in range(len(priority), 0, -1):
        keep = sorted(priority[:keep_n])
        table = render.text_table(
            [headers[i] for i in keep], [[row[i] for i in keep] for row in rows], [right[i] for i in keep]
        )
        if max(len(line) for line in table.splitlines()) <= width:
            break
    return table


# ---------------------------------------------------------------- tour


def tour_head(doc: Doc, width: int) -> str:
    """The title line, then the notes on method as one paragraph (their line breaks were made for 100 columns)."""
    title, *notes = [line for line in render.render_head(doc).splitlines() if line]
    return "\n".join([*wrap(title, width), *wrap(" ".join(notes), width), ""])


def tour_step(index: int, step: Mapping[str, Any], width: int) -> str:
    """A step in two or three lines: its title, its route and copies, and what each run cost."""
    first = step["runs"][0]
    out = wrap(f"{index}. {step['title']}", width, rest="   ")
    costs = []
    for run in step["runs"]:
        c = run["counters"]
        costs.append(f"{run['mode']} {fmt_secs(c['wall_s'])} wall, {fmt_secs(render.cpu_s(c))} CPU")
    moved = fmt_bytes(render.warm_run(step)["counters"]["user_bytes"])
    text = (
        f"route {render.route_note(first)}, {first['cpu_copies']} CPU copies: {'; '.join(costs)}; "
        f"{moved} through user space"
    )
    out += wrap(text, width, first="   ")
    return "\n".join(out)


# The compact comparison: path, run, route, wall, CPU (user + sys), syscalls, user-space, disk read, disk write,
# faults; kept in this order of priority when the terminal is narrow.
_TOUR_HEADERS = ("path", "run", "route", "wall", "CPU", "syscalls", "user-space", "disk read", "disk write", "faults")
_TOUR_RIGHT = (False, False, False, *([True] * 7))
_TOUR_PRIORITY = (0, 1, 3, 4, 6, 5, 2, 7, 8, 9)


def tour_table(doc: Doc, width: int) -> str:
    rows = []
    for step in doc["steps"]:
        for run in step["runs"]:
            c = run["counters"]
            rows.append([
                step["id"], run["mode"], run["route"], fmt_secs(c["wall_s"]), fmt_secs(render.cpu_s(c)),
                str(c["syscall_count"]), fmt_bytes(c["user_bytes"]), fmt_bytes(c["disk_read_bytes"]),
                fmt_bytes(c["disk_write_bytes"]), str(c["minor_faults"] + c["major_faults"]),
            ])  # fmt: skip
    return fit_table(_TOUR_HEADERS, rows, _TOUR_RIGHT, width, _TOUR_PRIORITY)


def tour_tail(doc: Doc, width: int) -> str:
    """The compact counterpart of render.render_tail: the table that fits, then the sentences, wrapped."""
    out = [rule("comparison (the full table: --wide, --json, --report)", width), tour_table(doc, width), ""]
    out.append(rule("what the numbers show", width))
    for _, sentence in render.conclusions(doc):
        out += wrap(sentence, width, first="• ")
    unavailable = doc.get("unavailable") or []
    if unavailable:
        out.append("")
        for u in unavailable:
            out += wrap(u, width, first="! ")
    out.append("")
    kept = f"; files kept in {doc['workdir']}" if doc.get("workdir") else ""
    out += wrap(f"tour wall time {fmt_secs(doc['wall_s'])}{kept}", width)
    return "\n".join(out)


def tour(doc: Doc, width: int) -> str:
    """A whole saved tour (`zcopy tour --from`), compact."""
    steps = [tour_step(i, s, width) for i, s in enumerate(doc["steps"], 1)]
    return "\n".join([tour_head(doc, width), "\n".join(steps), "", tour_tail(doc, width)])


# ---------------------------------------------------------------- bench

# Size classes of the summary: what a request, a chunk and a whole file of a copy tend to be.
SIZE_CLASSES: tuple[tuple[str, int, int], ...] = (
    ("small (< 64 KiB)", 0, 64 << 10),
    ("medium (64 KiB – < 16 MiB)", 64 << 10, 16 << 20),
    ("large (≥ 16 MiB)", 16 << 20, 1 << 62),
)


def _median(results: Sequence[Mapping[str, Any]], key: str) -> dict[tuple[int, str], float]:
    return {(r["size"], r["route"]): float(r[key]["median"]) for r in results}


def _geomean(xs: Sequence[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def bench_summary(doc: Doc) -> list[str]:
    """Per scenario and size class: the route with the best median MiB/s (geometric mean over the class's sizes
    of its ratio to the control, readwrite), that ratio with its min–max over the sizes, and its CPU per GiB
    against the control's. A route that fell back to another is not a candidate (its numbers are the other's)."""
    out = []
    for scen in doc["scenarios"]:
        results = [r for r in doc["results"] if r["scenario"] == scen["id"] and r["route_used"] == r["route"]]
        rate = _median(results, "mib_per_s")
        cpu = _median(results, "cpu_s_per_gib")
        parts = []
        for label, lo, hi in SIZE_CLASSES:
            sizes = sorted({s for s, rt in rate if lo <= s < hi and rate.get((s, CONTROL), 0) > 0})
            best: tuple[float, str, list[float], list[float]] | None = None
            for route in scen["routes"]:
                if route == CONTROL or any(rate.get((s, route), 0) <= 0 for s in sizes) or not sizes:
                    continue
                ratios = [rate[(s, route)] / rate[(s, CONTROL)] for s in sizes]
                cpus = [cpu[(s, route)] / cpu[(s, CONTROL)] for s in sizes if cpu.get((s, CONTROL), 0) > 0]
                g = _geomean(ratios)
                if best is None or g > best[0]:
                    best = (g, route, ratios, cpus)
            if best is None:
                continue
            g, route, ratios, cpus = best
            spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
            cpu_part = f", {_geomean(cpus):.2f}× its CPU per GiB" if cpus and all(x > 0 for x in cpus) else ""
            if g < 1:
                parts.append(f"{label}: {CONTROL} itself; the best other, {route}, "
                             f"{g:.2f}× its MiB/s{spread}{cpu_part}")  # fmt: skip
            else:
                parts.append(f"{label}: {route}, {g:.2f}× {CONTROL}'s MiB/s{spread}{cpu_part}")
        if parts:
            out.append(f"{scen['id']}: " + "; ".join(parts) + ".")
    return out


def bench_tables(doc: Doc, width: int) -> str:
    """One table per scenario: sizes down, routes across, median MiB/s (ranges and CPU: --wide, --json)."""
    out = []
    for scen in doc["scenarios"]:
        results = [r for r in doc["results"] if r["scenario"] == scen["id"]]
        present = {r["route"] for r in results}
        routes = [rt for rt in scen["routes"] if rt in present]
        cell = {(r["size"], r["route"]): r for r in results}
        rows = []
        for size in sorted({r["size"] for r in results}):
            row = [fmt_bytes(size)]
            for rt in routes:
                r = cell.get((size, rt))
                used = "" if r is None or r["route_used"] == rt else "*"  # a fallback: these are another's numbers
                row.append(f"{r['mib_per_s']['median']:.0f}{used}" if r else "n/a")
            rows.append(row)
        headers = ["MiB/s", *routes]
        # Keep the control next to the size whatever the width, then the routes in the scenario's order.
        order = [0] + [i + 1 for i, rt in enumerate(routes) if rt == CONTROL]
        order += [i + 1 for i, rt in enumerate(routes) if rt != CONTROL]
        table = fit_table(headers, rows, [False] + [True] * len(routes), width, order)
        title = wrap(f"{scen['id']}: {scen['title']}", width)
        dropped = len(routes) + 1 - len(table.splitlines()[0].split())
        if dropped > 0:
            title += wrap(f"({dropped} route(s) left out to fit {width} columns: --wide shows all)", width)
        if any(r["route_used"] != r["route"] for r in results):
            title += wrap("* fell back to another route: that route's numbers", width)
        out.append("\n".join([*title, table]))
    return "\n\n".join(out)


def bench(doc: Doc, width: int) -> str:
    """The compact bench: the tables that fit, then the summary, wrapped."""
    out = [bench_tables(doc, width), "", rule(f"summary (median MiB/s against {CONTROL}, the control)", width)]
    for line in bench_summary(doc):
        out += wrap(line, width, first="• ")
    return "\n".join(out)
