"""Bench JSON → PNG plots (matplotlib, imported only here and only when a report is asked for) + an HTML page.

Per scenario: CPU cost per GiB vs transfer size, throughput vs size, and the CPU each route saves against the
readwrite baseline; min–max of the repeats drawn as error bars around the medians.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path
from typing import Any

from zcopy import jsonout
from zcopy.lab import render
from zcopy.lab.render import Doc

# Fixed colours per route so the same route looks the same in every panel and every report.
ROUTE_COLOURS = {
    "sendfile": "#1f77b4",
    "splice": "#2ca02c",
    "copy_file_range": "#9467bd",
    "mmap": "#ff7f0e",
    "readwrite": "#d62728",
}


class MissingMatplotlib(RuntimeError):
    """The report needs matplotlib (pip install 'zcopy[lab]'); the tables work without it."""


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    if not have_matplotlib():
        raise MissingMatplotlib("the bench report needs matplotlib: pip install 'zcopy[lab]'")
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _series(doc: Doc, scen: str, route: str, key: str) -> tuple[list[int], list[float], list[list[float]]]:
    rows = sorted((r for r in doc["results"] if r["scenario"] == scen and r["route"] == route),
                  key=lambda r: r["size"])  # fmt: skip
    xs = [r["size"] for r in rows]
    med = [r[key]["median"] for r in rows]
    err = [[r[key]["median"] - r[key]["min"] for r in rows], [r[key]["max"] - r[key]["median"] for r in rows]]
    return xs, med, err


def _size_axis(ax: Any) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xlabel("transfer size (bytes, log scale)")
    ticks = sorted({r for r in ax.get_lines()[0].get_xdata()}) if ax.get_lines() else []
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels([render.fmt_bytes(t).replace(".0 ", " ") for t in ticks], rotation=45, ha="right")
    ax.grid(True, which="both", alpha=0.3)


def _scenario_axes(plt: Any, axes: Any, doc: Doc, scen: Any) -> None:
    ax_cpu, ax_rate, ax_saved = axes
    for route in scen["routes"]:
        xs, med, err = _series(doc, scen["id"], route, "cpu_s_per_gib")
        if not xs:
            continue
        colour = ROUTE_COLOURS.get(route)
        ax_cpu.errorbar(xs, med, yerr=err, marker="o", ms=3, capsize=2, label=route, color=colour)
        xs, med, err = _series(doc, scen["id"], route, "mib_per_s")
        ax_rate.errorbar(xs, med, yerr=err, marker="o", ms=3, capsize=2, label=route, color=colour)
    ax_cpu.set_yscale("log")
    ax_cpu.set_ylabel("CPU time per GiB moved (s/GiB, log)")
    ax_cpu.set_title(f"{scen['id']}: CPU cost per byte")
    ax_rate.set_yscale("log")
    ax_rate.set_ylabel("throughput (MiB/s, log)")
    ax_rate.set_title(f"{scen['id']}: throughput")
    saved = [s for s in render.cpu_saved(doc) if s[0] == scen["id"]]
    for route in scen["routes"]:
        pts = sorted((size, pct) for sc, rt, size, pct in saved if rt == route)
        if pts:
            ax_saved.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=route,
                          color=ROUTE_COLOURS.get(route))  # fmt: skip
    ax_saved.axhline(0, color="black", lw=0.8)
    ax_saved.set_ylabel("CPU saved vs readwrite (%)")
    ax_saved.set_title(f"{scen['id']}: CPU saved by zero-copy routes")
    for ax in axes:
        if ax.get_lines():
            _size_axis(ax)
            ax.legend(title="route", fontsize=8)


def write_report(doc: Doc, outdir: Path) -> list[Path]:
    """Write bench.json, one PNG per scenario, overview.png and index.html into outdir; returns the paths."""
    plt = _pyplot()
    outdir.mkdir(parents=True, exist_ok=True)
    written = [outdir / "bench.json"]
    written[0].write_text(jsonout.dumps(doc, indent=2) + "\n")
    scens = doc["scenarios"]
    pngs = []
    for scen in scens:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
        _scenario_axes(plt, axes, doc, scen)
        fig.suptitle(f"zcopy bench — {scen['title']} ({doc['machine']['cpus']} CPUs, kernel "
                     f"{doc['machine']['kernel']}, median of {doc['repeats']}, bars = min–max)")  # fmt: skip
        path = outdir / f"{scen['id']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        pngs.append(path)
    fig, grid = plt.subplots(len(scens), 3, figsize=(16, 4.4 * len(scens)), constrained_layout=True, squeeze=False)
    for row, scen in zip(grid, scens, strict=True):
        _scenario_axes(plt, row, doc, scen)
    fig.suptitle(f"zcopy bench {doc['date']} — median of {doc['repeats']} repeats, bars = min–max")
    overview = outdir / "overview.png"
    fig.savefig(overview, dpi=100)
    plt.close(fig)
    page = outdir / "index.html"
    page.write_text(html_page(doc, pngs))  # per-scenario plots beside their tables; overview.png is for docs
    return [*written, overview, *pngs, page]


def html_page(doc: Doc, images: list[Path]) -> str:
    """A self-contained page (images by relative name) with the plots and the median tables."""
    e = html.escape
    m = doc["machine"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>zcopy bench report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%}"
        "table{border-collapse:collapse;font-size:13px;margin-bottom:2em}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}</style></head><body>",
        "<h1>zcopy bench report</h1>",
        f"<p>{e(doc['date'])} · kernel {e(m['kernel'])} · {m['cpus']} CPUs · Python {e(m['python'])} · "
        f"load average at end {e(' '.join(f'{x:.2f}' for x in doc.get('loadavg', [])))} · "
        f"command <code>{e(doc['command'])}</code> · median of {doc['repeats']} repeats, min–max in brackets</p>",
    ]
    by_name = {img.stem: img for img in images}
    for scen in doc["scenarios"]:
        rows = sorted((r for r in doc["results"] if r["scenario"] == scen["id"]),
                      key=lambda r: (r["size"], r["route"]))  # fmt: skip
        parts.append(f"<h2>{e(scen['id'])}: {e(scen['title'])}</h2>")
        img = by_name.get(scen["id"])
        if img is not None:
            parts.append(f"<p><img src='{e(img.name)}' alt='{e(scen['id'])}: CPU per GiB, throughput, CPU saved'></p>")
        parts.append("<table><tr><th>size</th><th>route</th><th>route used</th><th>MiB/s</th><th>CPU s/GiB</th>"
                     "<th>syscalls/transfer</th><th>user-space bytes/transfer</th></tr>")  # fmt: skip
        for r in rows:
            rate, cpu = r["mib_per_s"], r["cpu_s_per_gib"]
            parts.append(
                f"<tr><td>{e(render.fmt_bytes(r['size']))}</td><td>{e(r['route'])}</td><td>{e(r['route_used'])}</td>"
                f"<td>{rate['median']:.0f} ({rate['min']:.0f}–{rate['max']:.0f})</td>"
                f"<td>{cpu['median']:.3f} ({cpu['min']:.3f}–{cpu['max']:.3f})</td>"
                f"<td>{r['syscall_count']}</td><td>{e(render.fmt_bytes(r['user_bytes']))}</td></tr>"
            )
        parts.append("</table>")
    if doc.get("notes"):
        parts.append("<h2>notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in doc["notes"]) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
