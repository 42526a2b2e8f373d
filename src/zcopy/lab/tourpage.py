"""`zcopy tour --report`: the tour JSON as a page — one diagram per path with its cold and warm figures, the
CPU/wall chart, the computed sentences and the article's section names. Pure: JSON in, {file name: text} out;
the caller writes the files (a single folder, opened from disk: no script, no CDN; the few CJK glyphs it quotes
travel with it, inline in report.css, so it reads without a CJK font: see cjkfont.py).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from zcopy import jsonout
from zcopy.lab import chart, cjkfont, diagram, svg
from zcopy.lab.render import cpu_s, fmt_bytes, fmt_rate, fmt_secs, route_note

Doc = Mapping[str, Any]
e = html.escape

# The article's own section titles (quoted as written in the source) and their English. A step says which
# section it illustrates in its `article` text ("§三.2 ...", "§一 DMA ..."); steps beyond the article name none.
ARTICLE_BASICS = ("一:了解IO基础概念", "I. IO basics: CPU copies and DMA copies")
ARTICLE_LAYERS = ("二:数据流动的层次结构", "II. The layers data flows through")
ARTICLE_PART = ("三:零拷贝", "III. Zero-copy")
ARTICLE_SECTIONS = {
    "一": ARTICLE_BASICS,
    "二": ARTICLE_LAYERS,
    "三.1": ("1.传统IO文件读写", "1. Traditional I/O: reading and writing a file"),
    "三.2": ("2.mmap 零拷贝技术", "2. mmap zero-copy"),
    "三.3": ("3.sendFile 零拷贝技术", "3. sendFile zero-copy"),
}
_SECTION_REF = re.compile(r"§([一二三](?:\.\d)?)")


def article_section(step: Mapping[str, Any]) -> tuple[str, str] | None:
    """(Chinese title, English) of the article section a step illustrates, from its `article` text."""
    m = _SECTION_REF.search(str(step.get("article") or ""))
    return ARTICLE_SECTIONS.get(m.group(1)) if m else None


def article_path(step: Mapping[str, Any]) -> tuple[str, str] | None:
    """The section with its part, as the article's table of contents nests them ("三:零拷贝 › 1.传统IO文件读写")."""
    m = _SECTION_REF.search(str(step.get("article") or ""))
    sec = ARTICLE_SECTIONS.get(m.group(1)) if m else None
    if m is None or sec is None:
        return None
    if "." in m.group(1):
        return f"{ARTICLE_PART[0]} › {sec[0]}", f"{ARTICLE_PART[1]} › {sec[1]}"
    return sec


# ---------------------------------------------------------------- figures beside each diagram


def _get(run: Mapping[str, Any], key: str) -> Any:
    """A value by dotted path ("counters.wall_s", "force.dirty_kb_before"); None where a part is absent."""
    value: Any = run
    for part in key.split("."):
        if not isinstance(value, Mapping) or value.get(part) is None:
            return None
        value = value[part]
    return value


def _kb(v: Any) -> str:
    return f"{int(v):,}".replace(",", "\u2009")  # thin-space thousands: 68 148


# (row label, [(JSON key within the run, formatter)]): several keys share a row, separated by " / ".
FIGURES: list[tuple[str, list[tuple[str, Callable[[Any], str]]]]] = [
    ("wall", [("counters.wall_s", fmt_secs)]),
    ("CPU user", [("counters.cpu_user_s", fmt_secs)]),
    ("CPU sys", [("counters.cpu_sys_s", fmt_secs)]),
    ("syscalls", [("counters.syscall_count", str)]),
    ("mode switches", [("counters.mode_switches", str)]),
    ("via user space", [("counters.user_bytes", fmt_bytes)]),
    ("disk read", [("counters.disk_read_bytes", fmt_bytes)]),
    ("disk write", [("counters.disk_write_bytes", fmt_bytes)]),
    ("Dirty before force, kB", [("force.dirty_kb_before", _kb)]),
    ("Dirty after force, kB", [("force.dirty_kb_after", _kb)]),
    ("force() took", [("force.wall_s", fmt_secs)]),
    ("faults min / maj", [("counters.minor_faults", str), ("counters.major_faults", str)]),
    ("ctx sw vol / invol", [("counters.ctx_voluntary", str), ("counters.ctx_involuntary", str)]),
    ("peer CPU user", [("peer.cpu_user_s", fmt_secs)]),
    ("peer CPU sys", [("peer.cpu_sys_s", fmt_secs)]),
]


def _value(run: Mapping[str, Any], key: str, fmt: Callable[[Any], str]) -> str:
    v = _get(run, key)
    if v is None:
        return "—"
    return f"<span class=v data-key='{e(key)}' data-value='{e(json.dumps(v))}'>{e(fmt(v))}</span>"


def _arrow_sep(row: str) -> str:
    return " → " if "→" in row else " / "


def figures_table(step: Mapping[str, Any]) -> str:
    runs = step["runs"]
    head = "".join(f"<th class=mode-{e(r['mode'])}>{e(r['mode'])}</th>" for r in runs)
    out = [f"<table class=figures data-step='{e(step['id'])}'><thead><tr><th></th>{head}</tr></thead><tbody>"]
    rate_cells = "".join(f"<td>{e(fmt_rate(r['nbytes'], r['counters']['wall_s']))}</td>" for r in runs)
    for label, keys in FIGURES:
        if all(_get(r, k) is None for r in runs for k, _ in keys):
            continue  # e.g. no force on a send, no other process on a file copy
        cells = "".join(
            f"<td data-run='{e(step['id'])}:{e(r['mode'])}'>"
            + _arrow_sep(label).join(_value(r, k, f) for k, f in keys) + "</td>"
            for r in runs
        )  # fmt: skip
        out.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
        if label == "wall":
            out.append(f"<tr class=sub><th>throughput</th>{rate_cells}</tr>")
    both = []
    for r in runs:
        if r.get("peer"):
            both.append(f"<td>{e(fmt_secs(cpu_s(r['counters']) + cpu_s(r['peer'])))}</td>")
        else:
            both.append("<td>—</td>")
    if any(r.get("peer") for r in runs):
        out.append(f"<tr class=sub><th>both ends' CPU</th>{''.join(both)}</tr>")
    # (peer = the other process of a socket path: the receiver of a send, the sender of a receive)
    checks = []
    for r in runs:
        cold = r.get("cold")
        if not cold:
            checks.append("<td></td>")
        elif cold["verified"]:
            checks.append("<td><span class='ok'>verified</span></td>")
        else:
            checks.append("<td><span class='bad'>NOT verified</span></td>")
    if any(r.get("cold") for r in runs):
        out.append(f"<tr><th>cold check</th>{''.join(checks)}</tr>")
    reps = [r.get("repeats") for r in runs]
    if any(reps):
        cells = "".join(
            f"<td class=small>{e(fmt_secs(rp['cpu_s']['min']))}–{e(fmt_secs(rp['cpu_s']['max']))}</td>"
            if rp and rp["n"] > 1 else "<td></td>"
            for rp in reps
        )  # fmt: skip
        out.append(f"<tr class=sub><th>CPU over {max(rp['n'] for rp in reps if rp)} repeats</th>{cells}</tr>")
    out.append("</tbody></table>")
    top = sorted(runs[-1]["counters"]["syscalls"].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    if top:
        out.append("<p class=syscalls>syscalls (" + e(str(runs[-1]["mode"])) + "): "
                   + ", ".join(f"<code>{e(n)}</code>&nbsp;{c}" for n, c in top) + "</p>")  # fmt: skip
    return "".join(out)


def arrows_table(model: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], sid: str) -> str:
    """Each arrow of the diagram in words: its kind, its ends, the model's note, and what each run measured."""
    head = "".join(f"<th>{e(r['mode'])}</th>" for r in runs)
    out = [f"<table class=arrows data-step='{e(sid)}'><thead><tr><th>#</th><th>copy</th><th>from → to</th>"
           f"{head}<th>measured as</th></tr></thead><tbody>"]  # fmt: skip
    for row in diagram.arrow_rows(model, runs):
        kind = row["kind"]
        style = diagram.KINDS.get(kind, diagram.UNKNOWN_KIND)
        note = f"<br><span class=note>{e(row['note'])}</span>" if row["note"] else ""
        cells = "".join(
            f"<td class=num data-key='{e(m.key)}' data-value='{m.nbytes}'>{e(m.label())}</td>"
            for m in row["measures"].values()
        )  # fmt: skip
        source = next(iter(row["measures"].values())).source if row["measures"] else ""
        out.append(
            f"<tr><td>{row['n']}</td><td><span class='kind' style='background:{style.colour}'>{e(kind)}</span></td>"
            f"<td>{e(row['from'])} → {e(row['to'])}{note}</td>{cells}<td class=small>{e(source)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


# ---------------------------------------------------------------- page parts


def _badges(run: Mapping[str, Any], model: Mapping[str, Any] | None) -> str:
    cpu = model["cpu_copies"] if model else run["cpu_copies"]
    dma = model["dma_copies"] if model else run["dma_copies"]
    user = bool(model["user_space"]) if model else run["counters"]["user_bytes"] > 0
    out = [
        f"<span class='badge route'>route <b>{e(str(run['route']))}</b></span>",
        f"<span class='badge {'cpu' if cpu else 'zero'}'>{cpu} CPU cop{'y' if cpu == 1 else 'ies'}</span>",
        f"<span class='badge dma'>{dma} DMA cop{'y' if dma == 1 else 'ies'}</span>",
        f"<span class='badge {'user' if user else 'zero'}'>"
        f"{'bytes pass through user space' if user else 'bytes never enter user space'}</span>",
    ]
    return "".join(out)


def _article(step: Mapping[str, Any]) -> str:
    sec = article_path(step)
    text = str(step.get("article") or "")
    if sec is None:
        return (f"<p class=article><span class='sec none'>beyond the article</span> "
                f"<span class=en>{e(text)}</span></p>")  # fmt: skip
    zh, en = sec
    # The step's own words: its parenthesised gloss ("§三.2 mmap 零拷贝 (page cache mapped into user space)"),
    # or the whole text when it says more than the section name ("§三.1's copies applied to sending: ...").
    gloss = re.search(r"\(([^)]*)\)\s*$", text)
    rest = gloss.group(1) if gloss else text
    return (  # the English first, the article's own words beside it
        f"<p class=article><span class=en>{e(en)}</span> <span class=sec><span lang=zh-CN>{e(zh)}</span></span>"
        + (f" <span class=gloss>{e(rest)}</span>" if rest else "") + "</p>"
    )


def path_section(index: int, step: Mapping[str, Any], sentence: str | None) -> tuple[str, str | None]:
    """(HTML section, standalone SVG or None) for one step."""
    runs = step["runs"]
    first = runs[0]
    model = diagram.model_of(first, str(step.get("job", "")))
    fallback = route_note(first)
    parts = [f"<section class=path id='path-{e(step['id'])}' data-step='{e(step['id'])}'>",
             f"<header><div class=idx>{index}</div><div class=titles><h2>{e(step['title'])}</h2>",
             _article(step), "</div></header>",
             f"<div class=badges>{_badges(first, model)}</div>"]  # fmt: skip
    if fallback != str(first["route"]):
        parts.append(f"<p class=warn>{e(fallback)}</p>")
    image = None
    parts.append("<div class=grid><figure class=diagram>")
    if model and model["hops"]:
        image = diagram.draw(model, runs, f"{step['id']}: {model['line']}")
        parts.append(image)
        parts.append(f"<figcaption><code>{e(model['line'])}</code></figcaption>")
    else:
        parts.append(f"<p class=warn>no copy model for route {e(str(first['route']))}; the flow was: "
                     f"<code>{e(str(first['flow']))}</code></p>")  # fmt: skip
    if model and model["hops"]:
        parts.append("<details class=arrows-detail open><summary>the arrows, measured</summary>"
                     + arrows_table(model, runs, str(step["id"])) + "</details>")  # fmt: skip
    parts.append("</figure><div class=side>")
    parts.append(figures_table(step))
    parts.append("</div></div>")
    if sentence:
        parts.append(f"<p class=sentence>{_sentence(sentence)}</p>")
    if step.get("note"):
        parts.append(f"<p class=note>{e(str(step['note']))}</p>")
    parts.append("</section>")
    return "".join(parts), image


def _sentence(s: str) -> str:
    """A computed sentence with its subject ("sendfile:") in bold."""
    head, sep, tail = s.partition(": ")
    return f"<b>{e(head)}:</b> {e(tail)}" if sep and len(head) < 60 else e(s)


def _glance(doc: Doc) -> str:
    """The paths side by side, grouped by the job they do (a path and its control next to each other)."""
    groups: dict[str, list[str]] = {}
    for i, step in enumerate(doc["steps"], 1):
        run = step["runs"][-1]
        c = run["counters"]
        sec = article_section(step)
        zh = (f"<span class=zh>{e(sec[1])} <span lang=zh-CN>{e(sec[0])}</span></span>" if sec
              else "<span class=zh>beyond the article</span>")  # fmt: skip
        copies = int(run["cpu_copies"])
        groups.setdefault(str(step.get("job") or "other"), []).append(
            f"<a class='card {'copies' if copies else 'nocopy'}' href='#path-{e(step['id'])}'>"
            f"<span class=who><span class=cidx>{i}</span> <b>{e(step['id'])}</b>{zh}</span>"
            f"<span class=fig><span class=big>{e(fmt_secs(cpu_s(c)))}</span>"
            f"<span class=lbl>CPU, {e(str(run['mode']))}</span></span>"
            f"<span class=facts>{copies} CPU cop{'y' if copies == 1 else 'ies'} · {c['syscall_count']} syscalls · "
            f"{e(fmt_bytes(c['user_bytes']))} via user space</span></a>"
        )
    cols = "".join(f"<div class=job><h3>{e(job)}</h3>{''.join(cards)}</div>" for job, cards in groups.items())
    key = ("<p class='small glance-key'>Each path's CPU time (its warm run), grouped by the job it does. Left edge: "
           "<b class=k-cpu>red</b> when the CPU copies the bytes on that path, <b class=k-ref>green</b> when no "
           "CPU copy is in its copy model.</p>")  # fmt: skip
    return "<nav class=glance>" + cols + "</nav>" + key


def _meta(doc: Doc) -> str:
    m, f = doc["machine"], doc["file"]
    colds = [r for s in doc["steps"] for r in s["runs"] if r.get("cold")]
    ok = sum(1 for r in colds if r["cold"]["verified"])
    chips = [
        e(str(doc.get("date", ""))),
        f"kernel {e(str(m['kernel']))}",
        f"{m['cpus']} CPUs",
        f"Python {e(str(m['python']))}",
        f"{e(fmt_bytes(f['size']))} {'generated' if f['generated'] else 'given'} file on "
        f"{e(str(f.get('fs_type') or 'unknown fs'))}",
        f"warm runs: median-CPU of {e(str(doc.get('repeats', 1)))}",
        (f"cold runs: {ok} of {len(colds)} verified by the disk counters" if colds else "warm runs only (--no-cold)"),
        f"tour wall time {e(fmt_secs(float(doc['wall_s'])))}",
    ]
    return "<p class=meta>" + "".join(f"<span>{c}</span>" for c in chips) + "</p>"


def _comparison(doc: Doc) -> str:
    comp = doc.get("comparison") or {}
    headers, rows = comp.get("headers") or [], comp.get("rows") or []
    if not headers:
        return ""
    head = "".join(f"<th>{e(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return (f"<section class=block id=comparison><h2>every number, one table</h2><div class=scroll>"
            f"<table class=comparison><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></section>")


def build(doc: Doc, command: str = "zcopy tour --report DIR") -> dict[str, str]:
    """Every file of the report folder: index.html, report.css, one SVG per path, chart.svg, legend.svg and the
    tour JSON it was drawn from (so `--from DIR/tour.json` redraws it)."""
    sentences = {str(c["path"]): str(c["sentence"]) for c in doc.get("conclusions") or []}
    files = {"report.css": cjkfont.font_face_css() + CSS, "tour.json": jsonout.dumps(doc, indent=2) + "\n"}
    chart_svg = chart.draw(doc)
    legend_svg = diagram.legend()
    files["chart.svg"] = chart_svg
    files["legend.svg"] = legend_svg
    sections = []
    for i, step in enumerate(doc["steps"], 1):
        section, image = path_section(i, step, sentences.get(str(step["id"])))
        sections.append(section)
        if image is not None:
            files[f"paths/{i}-{step['id']}.svg"] = image
    unavailable = doc.get("unavailable") or []
    page = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        "<title>zcopy tour — where every byte went</title><link rel=stylesheet href=report.css></head><body>",
        "<header class=hero><div class=wrap><p class=kicker>zcopy tour</p>",
        "<h1>Where every byte went, measured on this machine</h1>",
        "<p class=lede>The zero-copy article's diagrams, drawn from the copy model of the route that really ran, "
        "with the numbers this run measured on every arrow.</p>",
        _meta(doc), "</div></header><main class=wrap>",
        _glance(doc),
        "<section class='block intro'><div class=legend><h2>How to read the diagrams</h2><div>",
        f"<p class=article><span class=en>{e(ARTICLE_BASICS[1])}</span> "
        f"<span class=sec><span lang=zh-CN>{e(ARTICLE_BASICS[0])}</span></span></p>",
        legend_svg, "</div><div>",
        f"<p class=article><span class=en>{e(ARTICLE_LAYERS[1])}</span> "
        f"<span class=sec><span lang=zh-CN>{e(ARTICLE_LAYERS[0])}</span></span></p>",
        "<p>Lanes are the layers a byte passes: <b>user space</b> above the dashed kernel line, the kernel's "
        "buffers (page cache, pipe buffer, socket buffer) below it, the hardware (disk, NIC) at the bottom. "
        "Each arrow is one hop of the route's copy model, numbered in order. On it: the bytes this run "
        "measured for that hop (disk counters for the disk's arrows, zcopy's user-space byte count for arrows "
        "into and out of user space, the bytes the route moved for the kernel's own arrows) and, for the "
        "write-back arrow, how long <code>force()</code> took. A syscall is two mode switches (user → kernel "
        "→ user), as the article counts them. Sockets are loopback: the NIC lane stands for the loopback "
        "device, which copies nothing by DMA.</p></div></div></section>",
        "<section class=block id=chart><h2>CPU and wall time per path, cold and warm</h2>",
        chart_svg,
        "<p class=small>CPU is this process's (getrusage); on socket paths the other process's CPU is in each "
        "path's figures (peer). Cold runs start with the file's pages evicted from the page cache.</p></section>",
        "<section class=block id=sentences><h2>What the numbers show</h2><ul>",
        *(f"<li>{_sentence(s)}</li>" for s in sentences.values()),
        "</ul>",
        *(f"<p class=warn>{e(u)}</p>" for u in unavailable),
        "</section>",
        *sections,
        _comparison(doc),
        "<footer class=wrap><p>Made by <code>" + e(command) + "</code> with zcopy "
        + e(str(doc.get("zcopy_version", "?"))) + ". Redraw without measuring: <code>zcopy tour --report DIR "
        "--from tour.json</code> (the JSON is in this folder). Every figure comes from that JSON; every arrow "
        "from the copy model of the route that ran.</p></footer>",
        "</main></body></html>\n",
    ]
    files["index.html"] = "\n".join(page)
    return files


CSS = """\
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f5f6f9; --card:#ffffff; --accent:#6d28d9;
  --cpu:#dc2626; --dma:#6d28d9; --ref:#059669;
  font-family: '""" + cjkfont.FAMILY + "', " + svg.FONT + """; color: var(--ink); }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); line-height: 1.5; font-size: 15px; }
.wrap { max-width: 1380px; margin: 0 auto; padding: 0 24px; }
.hero { background: linear-gradient(120deg, #1e1b4b 0%, #312e81 55%, #0f766e 100%); color: #fff;
  padding: 34px 0 26px; margin-bottom: 22px; }
.hero h1 { margin: 2px 0 6px; font-size: 32px; letter-spacing: -0.01em; }
.kicker { margin: 0; text-transform: uppercase; letter-spacing: .14em; font-size: 12px; opacity: .8; }
.lede { margin: 0 0 14px; font-size: 16px; opacity: .92; max-width: 860px; }
.meta { display: flex; flex-wrap: wrap; gap: 8px; margin: 0; }
.meta span { background: rgba(255,255,255,.13); border: 1px solid rgba(255,255,255,.22); border-radius: 999px;
  padding: 2px 11px; font-size: 13px; }
.glance { display: grid; grid-template-columns: repeat(auto-fit, minmax(250px, 1fr)); gap: 14px;
  margin-bottom: 22px; align-items: start; }
.job h3 { margin: 0 0 6px; font-size: 12px; text-transform: uppercase; letter-spacing: .1em; color: var(--muted); }
.card { display: grid; grid-template-columns: 1fr auto; gap: 0 10px; background: var(--card); border-radius: 10px;
  padding: 9px 12px; margin-bottom: 8px; text-decoration: none; color: inherit;
  box-shadow: 0 1px 3px rgba(0,0,0,.08); border-left: 5px solid var(--accent); }
.card:hover { box-shadow: 0 4px 14px rgba(0,0,0,.12); }
.card.copies { border-left-color: var(--cpu); }
.card.nocopy { border-left-color: var(--ref); }
.card .who { display: flex; flex-direction: column; min-width: 0; }
.cidx { color: var(--muted); font-size: 12px; font-weight: 400; }
.card .zh { font-size: 12px; color: var(--muted); }
.card .fig { text-align: right; }
.card .big { display: block; font-size: 20px; font-weight: 700; line-height: 1.15; white-space: nowrap; }
.card .lbl { font-size: 10.5px; color: var(--muted); text-transform: uppercase; letter-spacing: .06em; }
.card .facts { grid-column: 1 / -1; font-size: 12px; margin-top: 3px; color: #374151; }
.glance-key { margin: -10px 0 18px; } .k-cpu { color: var(--cpu); } .k-ref { color: var(--ref); }
.block, .path { background: var(--card); border-radius: 14px; padding: 20px 24px; margin-bottom: 22px;
  box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.intro .legend { display: grid; grid-template-columns: minmax(300px, 5fr) 6fr; gap: 8px 32px; }
.intro h2 { grid-column: 1 / -1; }
h2 { font-size: 20px; margin: 0 0 8px; }
svg { max-width: 100%; height: auto; display: block; }
.path header { display: flex; gap: 14px; align-items: flex-start; }
.idx { flex: none; width: 38px; height: 38px; border-radius: 50%; background: var(--accent); color: #fff;
  font-weight: 700; font-size: 18px; display: flex; align-items: center; justify-content: center; }
.titles h2 { margin: 2px 0 2px; }
.article { margin: 0 0 6px; font-size: 14px; color: #374151; }
.sec { display: inline-block; background: #fef3c7; color: #7c4a03; border: 1px solid #f5d48a; border-radius: 6px;
  padding: 0 8px; font-weight: 600; }
.sec.none { background: #eef2ff; color: #3730a3; border-color: #c7d2fe; }
.en { color: #374151; }
.gloss { color: var(--muted); }
.badges { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0 12px 52px; }
.badge { border-radius: 999px; padding: 2px 10px; font-size: 13px; background: #f3f4f6; border: 1px solid #e5e7eb; }
.badge.cpu { background: #fee2e2; border-color: #fecaca; color: #991b1b; font-weight: 600; }
.badge.zero { background: #d1fae5; border-color: #a7f3d0; color: #065f46; font-weight: 600; }
.badge.dma { background: #ede9fe; border-color: #ddd6fe; color: #5b21b6; }
.badge.user { background: #fef3c7; border-color: #fde68a; color: #92400e; font-weight: 600; }
.grid { display: grid; grid-template-columns: minmax(0, 2fr) minmax(340px, 1fr); gap: 22px; align-items: start; }
figure { margin: 0; }
figure svg { border: 1px solid var(--line); border-radius: 10px; }
figcaption { margin-top: 6px; font-size: 12.5px; color: var(--muted); }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.figures th { text-align: left; font-weight: 500; color: #374151; white-space: nowrap; }
table.figures { font-size: 13px; }
table.figures thead th { font-weight: 700; text-transform: uppercase; font-size: 12px; letter-spacing: .06em; }
table.figures td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.figures thead th.mode-cold { color: #1d4ed8; text-align: right; }
table.figures thead th.mode-warm { color: #b45309; text-align: right; }
tr.sub th, tr.sub td { color: var(--muted); font-size: 12.5px; }
.small { font-size: 12.5px; color: var(--muted); }
.ok { color: #047857; font-weight: 600; }
.bad { color: #b91c1c; font-weight: 700; }
.syscalls { font-size: 12.5px; color: #374151; margin: 8px 0 0; }
.arrows-detail { margin-top: 12px; }
.arrows-detail summary { cursor: pointer; color: var(--muted); font-size: 13px; }
table.arrows td.num { white-space: nowrap; font-variant-numeric: tabular-nums; }
table.arrows th { text-align: left; font-size: 12px; color: var(--muted); font-weight: 600; }
.kind { color: #fff; border-radius: 999px; padding: 0 8px; font-weight: 700; font-size: 12px; }
.note { color: var(--muted); font-size: 12.5px; }
.sentence { background: #f8fafc; border-left: 4px solid var(--accent); padding: 8px 14px; margin: 14px 0 0;
  border-radius: 0 8px 8px 0; }
.warn { background: #fff7ed; border-left: 4px solid #ea580c; padding: 6px 12px; border-radius: 0 8px 8px 0; }
#sentences li { margin-bottom: 6px; }
.scroll { overflow-x: auto; }
table.comparison { font-size: 12.5px; white-space: nowrap; }
table.comparison th { background: #f3f4f6; text-align: left; }
code { font-family: ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: .92em; }
footer { color: var(--muted); font-size: 13px; padding-bottom: 30px; }
@media (max-width: 1000px) { .grid, .intro .legend { grid-template-columns: 1fr; } .badges { margin-left: 0; } }
@media print {
  @page { size: A4; margin: 12mm; }
  body { background: #fff; font-size: 9.5pt; }
  .hero { background: none; color: var(--ink); padding: 0 0 6px; margin-bottom: 10px;
    border-bottom: 2px solid var(--ink); }
  .hero h1 { font-size: 20pt; }
  .meta span { border-color: #999; background: none; }
  .block, .path, .card { box-shadow: none; border: 1px solid #ccc; }
  .block, .path { padding: 10px 12px; margin-bottom: 10px; }
  .path { break-before: page; }
  figure, table, .card, .sentence, .path header { break-inside: avoid; }
  .grid, .intro .legend { grid-template-columns: 1fr; gap: 8px; }
  table.figures { width: auto; min-width: 60%; }
  table { font-size: 8pt; } table.figures { font-size: 8pt; } th, td { padding: 2px 4px; }
  .glance { grid-template-columns: repeat(4, 1fr); gap: 8px; }
  .arrows-detail summary { display: none; }
  a { color: inherit; text-decoration: none; }
  .wrap { max-width: none; padding: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""
