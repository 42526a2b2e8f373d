"""Pure rendering for the lab: tour step blocks, comparison tables and the per-path conclusions.

Input is the tour/bench JSON document (plain dicts), output is text. Every sentence is computed from the
measured numbers in the document; nothing here does I/O or knows a number in advance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Doc = Mapping[str, Any]

# A cold run counts as verified when the disk delivered at least this share of the bytes the path read:
# readahead can round up, a few pages may survive eviction (mapped elsewhere), 90% tolerates both.
COLD_SHARE = 0.9


# ---------------------------------------------------------------- units


def fmt_bytes(n: float) -> str:
    """Binary units, as the page cache counts (4 KiB pages)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def fmt_secs(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_rate(nbytes: float, secs: float) -> str:
    if secs <= 0:
        return "—"
    return f"{nbytes / secs / (1 << 20):.0f} MiB/s"


def fmt_ratio(a: float, b: float) -> str:
    """'3.2× less' / '1.4× more' / 'the same' for a compared with b."""
    if a <= 0 and b <= 0:
        return "the same"
    if a <= 0:
        return "none vs some"
    r = b / a
    if 0.9 <= r <= 1.1:  # within 10%: one preempted tick on a loaded 2-core VM moves CPU times this much
        return "about the same"
    return f"{r:.1f}× less" if r > 1 else f"{1 / r:.1f}× more"


# ---------------------------------------------------------------- tables


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """Aligned plain-text table; `right[i]` right-aligns column i (numbers)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    align = list(right) if right is not None else [False] * len(headers)

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if align[i] else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    rule = "  ".join("─" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


# ---------------------------------------------------------------- tour


def cpu_s(c: Mapping[str, Any]) -> float:
    return float(c["cpu_user_s"]) + float(c["cpu_sys_s"])


def warm_run(step: Mapping[str, Any]) -> Mapping[str, Any]:
    """The run used for comparisons: the warm one (page cache already holds the file), else the only one."""
    runs = step["runs"]
    for r in runs:
        if r["mode"] == "warm":
            return r  # type: ignore[no-any-return]
    return runs[-1]  # type: ignore[no-any-return]


def route_note(run: Mapping[str, Any]) -> str:
    """'sendfile' or 'readwrite (asked for sendfile; sendfile: EINVAL …)' — a fallback is always visible."""
    used = run["route"]
    asked = run.get("requested_route")
    skipped = run.get("skipped") or []
    if asked and asked != used:
        why = "; ".join(f"{r}: {reason}" for r, reason in skipped) or "no reason reported"
        return f"{used}  (FALLBACK: asked for {asked}; {why})"
    if skipped:
        return f"{used}  (skipped: " + "; ".join(f"{r}: {reason}" for r, reason in skipped) + ")"
    return str(used)


def cold_note(run: Mapping[str, Any]) -> str | None:
    cold = run.get("cold")
    if not cold:
        return None
    got = fmt_bytes(cold["disk_read_bytes"])
    want = fmt_bytes(cold["expected_bytes"])
    if cold["verified"]:
        return f"cold: verified, the disk read {got} of the {want} this path reads"
    return f"cold: NOT verified, the disk read only {got} of {want} ({cold.get('note') or 'pages stayed cached'})"


def run_lines(run: Mapping[str, Any]) -> list[str]:
    """The measured lines of one run, in the article's vocabulary."""
    c = run["counters"]
    lines = [
        f"wall {fmt_secs(c['wall_s'])}  {fmt_rate(run['nbytes'], c['wall_s'])}  "
        f"CPU user {fmt_secs(c['cpu_user_s'])} sys {fmt_secs(c['cpu_sys_s'])}  "
        f"syscalls {c['syscall_count']} ({c['mode_switches']} user/kernel mode switches)",
        f"ctx switches {c['ctx_voluntary']} voluntary / {c['ctx_involuntary']} involuntary  "
        f"page faults {c['minor_faults']} minor / {c['major_faults']} major  "
        f"crossed user space {fmt_bytes(c['user_bytes'])}",
        f"disk read {fmt_bytes(c['disk_read_bytes'])}  disk write {fmt_bytes(c['disk_write_bytes'])}  "
        f"Dirty {c['dirty_kb_before']} kB → {c['dirty_kb_after']} kB",
    ]
    force = run.get("force")
    if force:
        lines.append(
            f"force: Dirty {force['dirty_kb_before']} kB → {force['dirty_kb_after']} kB in "
            f"{fmt_secs(force['wall_s'])}, disk write during force {fmt_bytes(force['disk_write_bytes'])}"
        )
    top = sorted(c["syscalls"].items(), key=lambda kv: (-kv[1], kv[0]))[:6]
    if top:
        lines.append("syscalls: " + ", ".join(f"{name} {n}" for name, n in top))
    peer = run.get("peer")
    if peer:
        both = cpu_s(c) + cpu_s(peer)
        lines.append(
            f"the other process ({peer['role']}): CPU user {fmt_secs(peer['cpu_user_s'])} sys "
            f"{fmt_secs(peer['cpu_sys_s'])}; both ends together {fmt_secs(both)}"
        )
    note = cold_note(run)
    if note:
        lines.append(note)
    reps = run.get("repeats")
    if reps and reps["n"] > 1:
        cs, ws = reps["cpu_s"], reps["wall_s"]
        lines.append(
            f"median-CPU run of {reps['n']}: CPU {fmt_secs(cs['min'])}–{fmt_secs(cs['max'])}, "
            f"wall {fmt_secs(ws['min'])}–{fmt_secs(ws['max'])} across the repeats"
        )
    return lines


def step_block(index: int, step: Mapping[str, Any]) -> str:
    head = f"── {index}. {step['title']} "
    out = [head + "─" * max(3, 100 - len(head))]
    if step.get("article"):
        out.append(f"   article: {step['article']}")
    first = step["runs"][0]
    out.append(f"   route   {route_note(first)}")
    out.append(
        f"   flow    {first['flow']}    [{first['cpu_copies']} CPU copies, {first['dma_copies']} DMA copies]"
    )
    for run in step["runs"]:
        if run["route"] != first["route"]:
            out.append(f"   ({run['mode']} run used route {route_note(run)}: {run['flow']})")
        lines = run_lines(run)
        out.append(f"   {run['mode']:<6}  {lines[0]}")
        out.extend(f"           {ln}" for ln in lines[1:])
    if step.get("note"):
        out.append(f"   note: {step['note']}")
    return "\n".join(out)


COMPARISON_HEADERS = (
    "path", "run", "route", "wall", "MiB/s", "CPU user", "CPU sys", "syscalls", "mode sw",
    "ctx vol/invol", "faults min/maj", "user-space", "disk read", "disk write", "Dirty kB before→after force",
)  # fmt: skip


def comparison_rows(doc: Doc) -> list[list[str]]:
    rows = []
    for step in doc["steps"]:
        for run in step["runs"]:
            c = run["counters"]
            force = run.get("force")
            dirty = f"{force['dirty_kb_before']}→{force['dirty_kb_after']}" if force else "—"
            rate = run["nbytes"] / c["wall_s"] / (1 << 20) if c["wall_s"] > 0 else 0.0
            rows.append([
                step["id"], run["mode"], run["route"], fmt_secs(c["wall_s"]), f"{rate:.0f}",
                fmt_secs(c["cpu_user_s"]), fmt_secs(c["cpu_sys_s"]), str(c["syscall_count"]),
                str(c["mode_switches"]), f"{c['ctx_voluntary']}/{c['ctx_involuntary']}",
                f"{c['minor_faults']}/{c['major_faults']}", fmt_bytes(c["user_bytes"]),
                fmt_bytes(c["disk_read_bytes"]), fmt_bytes(c["disk_write_bytes"]), dirty,
            ])  # fmt: skip
    return rows


def comparison_table(doc: Doc) -> str:
    right = [False, False, False] + [True] * (len(COMPARISON_HEADERS) - 3)
    return text_table(COMPARISON_HEADERS, comparison_rows(doc), right)


def _steps(doc: Doc) -> dict[str, Mapping[str, Any]]:
    return {s["id"]: s for s in doc["steps"]}


def _route_phrase(run: Mapping[str, Any], intended: str) -> str:
    if run["route"] == intended:
        return intended
    return f"{intended} (unavailable here; the {run['route']} fallback ran)"


def _both_ends(run: Mapping[str, Any], control: Mapping[str, Any], label: str) -> str:
    """'; LABEL: N× CPU (a vs b)' with each run's peer process added in, when both runs measured their peer."""
    ps, pk = run.get("peer"), control.get("peer")
    if not (ps and pk):
        return ""
    a = cpu_s(run["counters"]) + cpu_s(ps)
    b = cpu_s(control["counters"]) + cpu_s(pk)
    return f"; {label}: {fmt_ratio(a, b)} CPU ({fmt_secs(a)} vs {fmt_secs(b)})"


def cold_run(step: Mapping[str, Any]) -> Mapping[str, Any]:
    """The cold run of a step if it has one (what the direct route is for), else the warm one."""
    for r in step["runs"]:
        if r["mode"] == "cold":
            return r  # type: ignore[no-any-return]
    return warm_run(step)


def _dirty_left(run: Mapping[str, Any]) -> int:
    """kB of dirty page cache the copy left for force to write (the drop of Dirty during force, never below 0)."""
    f = run.get("force")
    return max(0, f["dirty_kb_before"] - f["dirty_kb_after"]) if f else 0


def _direct_sentence(
    dio: Mapping[str, Any], cfr: Mapping[str, Any] | None, rw: Mapping[str, Any] | None
) -> str:
    """direct vs copy_file_range vs read+write, on the cold runs (a cold source is the case direct exists for)."""
    r = cold_run(dio)
    c = r["counters"]
    s = (
        f"{_route_phrase(r, 'direct')} ({r['mode']}): {r['cpu_copies']} CPU copies in the model, "
        f"{fmt_bytes(c['user_bytes'])} copied by the CPU across user space, {fmt_secs(cpu_s(c))} CPU and "
        f"{fmt_secs(c['wall_s'])} wall for a durable copy; the disk read {fmt_bytes(c['disk_read_bytes'])} and force "
        f"found {_dirty_left(r)} kB of dirty pages to write"
    )
    others = [(name, cold_run(st)) for name, st in (("copy_file_range", cfr), ("read+write", rw)) if st]
    if others:
        s += "; " + ", ".join(
            f"{name} {fmt_secs(cpu_s(o['counters']))} CPU, {fmt_secs(o['counters']['wall_s'])} wall, "
            f"{_dirty_left(o)} kB dirty at force (direct used {fmt_ratio(cpu_s(c), cpu_s(o['counters']))} CPU)"
            for name, o in others
        )
    return s + "."


def conclusions(doc: Doc) -> list[tuple[str, str]]:
    """One sentence per path, each computed from the warm-run numbers (the cold ones add disk cost)."""
    steps = _steps(doc)
    size = int(doc["file"]["size"])
    out: list[tuple[str, str]] = []

    trad = steps.get("traditional")
    if trad:
        r = warm_run(trad)
        c = r["counters"]
        out.append(("traditional", (
            f"traditional: {fmt_bytes(c['user_bytes'])} crossed user space "
            f"({c['user_bytes'] / size:.1f}× the file: every byte copied in by read and out by write) "
            f"in {c['syscall_count']} syscalls ({c['mode_switches']} mode switches), "
            f"costing {fmt_secs(cpu_s(c))} of CPU."
        )))  # fmt: skip

    mm = steps.get("mmap")
    if mm:
        r = warm_run(mm)
        c = r["counters"]
        s = (
            f"mmap: the same edit moved {fmt_bytes(c['user_bytes'])} through user-space buffers, "
            f"took {c['syscall_count']} syscalls and {c['minor_faults'] + c['major_faults']} page faults"
        )
        if trad:
            t = warm_run(trad)["counters"]
            s += (
                f" (traditional: {fmt_bytes(t['user_bytes'])}, {t['syscall_count']} syscalls, "
                f"{t['minor_faults'] + t['major_faults']} faults), used {fmt_ratio(cpu_s(c), cpu_s(t))} CPU"
            )
            dw, tw = c["disk_write_bytes"], t["disk_write_bytes"]
            changed = r.get("edit", {}).get("replaced", 0) * 3
            if dw * 2 <= tw:
                s += f"; it dirtied only {fmt_bytes(dw)} for the disk vs {fmt_bytes(tw)}"
            else:
                s += f"; it still dirtied {fmt_bytes(dw)} for the disk vs {fmt_bytes(tw)}"
                if changed:
                    s += f" for {fmt_bytes(changed)} of changed bytes: the kernel writes back whole pages (folios)"
        out.append(("mmap", s + "."))

    send = steps.get("sendfile")
    ctrl = steps.get("read_send")
    if send:
        r = warm_run(send)
        c = r["counters"]
        s = f"{_route_phrase(r, 'sendfile')}: sent the file to the socket with {fmt_bytes(c['user_bytes'])} "
        s += "crossing user space"
        if ctrl:
            kr = warm_run(ctrl)
            k = kr["counters"]
            s += (
                f" vs {fmt_bytes(k['user_bytes'])} for read+send, {c['syscall_count']} vs {k['syscall_count']} "
                f"syscalls, and {fmt_ratio(cpu_s(c), cpu_s(k))} CPU in the sender ({fmt_secs(cpu_s(c))} vs "
                f"{fmt_secs(cpu_s(k))})"
            )
            s += _both_ends(r, kr, "counting the receiving process too")
        out.append(("sendfile", s + "."))

    spl = steps.get("splice_recv")
    rctl = steps.get("recv_write")
    if spl:
        r = warm_run(spl)
        c = r["counters"]
        s = (
            f"{_route_phrase(r, 'splice')} receive: wrote {fmt_bytes(r['nbytes'])} from the socket into the file "
            f"with {fmt_bytes(c['user_bytes'])} crossing user space, {c['syscall_count']} syscalls, "
            f"{fmt_secs(cpu_s(c))} CPU at {fmt_rate(r['nbytes'], c['wall_s'])}"
        )
        if rctl:
            kr = warm_run(rctl)
            k = kr["counters"]
            s += (
                f"; recv+write moved {fmt_bytes(k['user_bytes'])} through user space in {k['syscall_count']} "
                f"syscalls, so splice used {fmt_ratio(cpu_s(c), cpu_s(k))} CPU ({fmt_secs(cpu_s(c))} vs "
                f"{fmt_secs(cpu_s(k))}) and took {fmt_ratio(c['wall_s'], k['wall_s'])} wall time"
            )
            s += _both_ends(r, kr, "with the sending process")
        out.append(("splice_recv", s + "."))

    cfr = steps.get("copy_file_range")
    if cfr:
        r = warm_run(cfr)
        c = r["counters"]
        share = c["cpu_sys_s"] / cpu_s(c) if cpu_s(c) > 0 else 0.0
        s = (
            f"{_route_phrase(r, 'copy_file_range')}: copied the file with {fmt_bytes(c['user_bytes'])} crossing "
            f"user space in {c['syscall_count']} syscalls and {fmt_secs(cpu_s(c))} CPU, {share:.0%} of it in the "
            f"kernel"
        )
        if r["cpu_copies"]:
            s += f": the bytes are still copied ({r['cpu_copies']} CPU copy in the model), never via user space"
        out.append(("copy_file_range", s + "."))

    dio = steps.get("direct_copy")
    if dio:
        out.append(("direct_copy", _direct_sentence(dio, cfr, steps.get("readwrite_copy"))))

    if ctrl:
        r = warm_run(ctrl)
        c = r["counters"]
        out.append(("read_send", (
            f"read+send (control): {fmt_bytes(c['user_bytes'])} crossed user space "
            f"({c['user_bytes'] / max(1, r['nbytes']):.1f}× the bytes sent) in {c['syscall_count']} syscalls, "
            f"{fmt_secs(cpu_s(c))} CPU at {fmt_rate(r['nbytes'], c['wall_s'])}."
        )))  # fmt: skip

    colds = [(s["id"], r) for s in doc["steps"] for r in s["runs"] if r.get("cold")]
    if colds:
        bad = [sid for sid, r in colds if not r["cold"]["verified"]]
        extra = [
            f"{sid} {fmt_secs(r['counters']['wall_s'])} cold vs "
            f"{fmt_secs(warm_run(steps[sid])['counters']['wall_s'])} warm"
            for sid, r in colds
        ]
        s = f"cold runs: {len(colds) - len(bad)} of {len(colds)} verified cold by the disk counters"
        if bad:
            s += f" (NOT cold: {', '.join(bad)})"
        out.append(("cold", s + "; " + ", ".join(extra) + "."))
    rank = {sid: i for i, sid in enumerate(steps)}
    return sorted(out, key=lambda kv: rank.get(kv[0], len(rank)))  # step order, the cold summary last


def render_tail(doc: Doc) -> str:
    """Everything after the step blocks: comparison table, conclusions, unavailable routes, wall time."""
    unavailable = doc.get("unavailable") or []
    tail = ["── comparison " + "─" * 86, comparison_table(doc), "", "── what the numbers show " + "─" * 75]
    tail.extend(f"• {sentence}" for _, sentence in conclusions(doc))
    if unavailable:
        tail.append("")
        tail.extend(f"! {u}" for u in unavailable)
    tail.append("")
    tail.append(f"tour wall time {fmt_secs(doc['wall_s'])}" + (f"; files kept in {doc['workdir']}"
                                                                 if doc.get("workdir") else ""))
    return "\n".join(tail)


def render_head(doc: Doc) -> str:
    return "\n".join(_head(doc))


def render_tour(doc: Doc) -> str:
    blocks = [step_block(i, s) for i, s in enumerate(doc["steps"], 1)]
    return "\n".join([*_head(doc), "\n\n".join(blocks), "", render_tail(doc)])


def _head(doc: Doc) -> list[str]:
    f = doc["file"]
    origin = "generated" if f["generated"] else "given"
    head = [
        f"zcopy tour — {fmt_bytes(f['size'])} {origin} file {f['path']} "
        f"({f.get('fs_type') or 'unknown fs'}), kernel {doc['machine']['kernel']}, "
        f"{doc['machine']['cpus']} CPUs, Python {doc['machine']['python']}",
        ("Each path that reads the file runs cold (its pages evicted: fsync + posix_fadvise DONTNEED), then warm."
         if doc.get("cold_runs", True) else "Warm runs only (--no-cold): the file is in the page cache."),
        f"Warm runs are repeated {doc.get('repeats', 1)}× and the run with the median CPU time is shown.",
        "Mode switches = 2 × syscalls (one user→kernel, one back), as the article counts them. Sockets are",
        "loopback: the copy models draw a real NIC, here the loopback device stands in for it (no DMA).",
        "",
    ]
    return head


# ---------------------------------------------------------------- bench


def bench_tables(doc: Doc) -> str:
    """One table per scenario: rows = sizes, columns = routes, cells = median MiB/s and CPU s/GiB (min–max)."""
    out = []
    for scen in doc["scenarios"]:
        results = [r for r in doc["results"] if r["scenario"] == scen["id"]]
        present = {r["route"] for r in results}
        routes = [rt for rt in scen["routes"] if rt in present]
        sizes = sorted({r["size"] for r in results})
        cell = {(r["size"], r["route"]): r for r in results}
        headers = ["size", *(f"{rt} MiB/s" for rt in routes), *(f"{rt} CPU s/GiB" for rt in routes)]
        rows = []
        for size in sizes:
            row = [fmt_bytes(size)]
            for rt in routes:
                r = cell.get((size, rt))
                row.append(_range_cell(r["mib_per_s"]) if r else "n/a")
            for rt in routes:
                r = cell.get((size, rt))
                row.append(_range_cell(r["cpu_s_per_gib"], 3) if r else "n/a")
            rows.append(row)
        fallbacks = sorted({f"{r['route']}→{r['route_used']}" for r in results if r["route_used"] != r["route"]})
        title = f"{scen['id']}: {scen['title']}"
        if fallbacks:
            title += f"   (fallbacks taken: {', '.join(fallbacks)})"
        out.append(title + "\n" + text_table(headers, rows, [False] + [True] * (len(headers) - 1)))
    return "\n\n".join(out)


def _range_cell(s: Mapping[str, float], digits: int = 0) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def cpu_saved(doc: Doc, baseline: str = "readwrite") -> list[tuple[str, str, int, float]]:
    """(scenario, route, size, % CPU saved vs the baseline route at the same size), from medians."""
    base = {(r["scenario"], r["size"]): r for r in doc["results"] if r["route"] == baseline}
    out = []
    for r in doc["results"]:
        b = base.get((r["scenario"], r["size"]))
        if r["route"] == baseline or b is None or b["cpu_s_per_gib"]["median"] <= 0:
            continue
        saved = 100.0 * (1 - r["cpu_s_per_gib"]["median"] / b["cpu_s_per_gib"]["median"])
        out.append((r["scenario"], r["route"], r["size"], saved))
    return out



# ---------------------------------------------------------------- explain


def route_verdicts(doc: Doc) -> list[tuple[str, str, str]]:
    """(route, verdict, why) for every route zcopy has: used / gave up / not tried / not for this pair."""
    pair = f"{doc['src_kind']}→{doc['dst_kind']}"
    used = doc["route"]
    skipped = {r: why for r, why in doc["skipped"]}
    order = list(doc["order"])
    selection = doc.get("selection")  # the direct-or-not choice of a whole-file copy (--to file)
    out = []
    for r in doc["static_reasons"]:
        static = doc["static_reasons"][r]
        if r == used:
            if doc["forced_route"]:
                why = f"forced with --route {r}"
            elif selection and selection["preferred"] == r:
                why = f"chosen: {selection['reason']}"
            elif skipped:
                why = f"first route in the {pair} order that worked ({' → '.join(order)})"
            else:
                why = f"first choice for {pair} in zcopy's order ({' → '.join(order)}): fewest copies here"
            out.append((r, "USED", why))
        elif r in skipped:
            out.append((r, "gave up", skipped[r]))
        elif static is not None:
            out.append((r, "cannot", static))
        elif selection and r == "direct" and not doc["forced_route"]:
            out.append((r, "not chosen", selection["reason"]))
        elif doc["forced_route"]:
            out.append((r, "not tried", f"--route {doc['forced_route']} forces one route"))
        elif r in order and order.index(r) > order.index(used):
            out.append((r, "not tried", f"comes after {used} in the {pair} order and {used} succeeded"))
        else:
            out.append((r, "not used", f"not in zcopy's order for {pair} (not better than the routes there)"))
    return out


def render_explain(doc: Doc) -> str:
    c = doc["counters"]
    m = doc["model"]
    lines = [
        f"{doc['file']} ({fmt_bytes(doc['size'])}) → {doc['target']}",
        f"route     {doc['route']}  ({doc['src_kind']} → {doc['dst_kind']}, moved {fmt_bytes(doc['nbytes'])})",
        *([f"choice    {doc['selection']['reason']}"] if doc.get("selection") else []),
        f"model     {m['line']}",
        f"          {m['cpu_copies']} CPU copies, {m['dma_copies']} DMA copies, "
        + ("bytes pass through user space" if m["user_space"] else "bytes never enter user space"),
        "",
        "why this route, and why not the others:",
        text_table(["route", "verdict", "why"], [list(v) for v in route_verdicts(doc)]),
        "",
        "measured:",
    ]
    run = {"counters": c, "nbytes": doc["nbytes"]}
    lines.extend(f"  {ln}" for ln in run_lines(run))
    return "\n".join(lines)


def bench_markdown(doc: Doc, machine: str | None = None) -> str:
    """The bench as a markdown section (for `make bench`): context line, then one table per scenario."""
    m = doc["machine"]
    load = doc.get("loadavg")
    where = machine or f"kernel {m['kernel']} · {m['cpus']} CPUs · Python {m['python']}"
    out = [
        "## zcopy lab bench (routes × sizes)",
        "",
        f"{doc['date']} · {where} · load average at end "
        f"{' '.join(f'{x:.2f}' for x in load) if load else '?'} · `{doc['command']}` · median of {doc['repeats']} "
        "shuffled rounds, (min–max)",
    ]
    for scen in doc["scenarios"]:
        results = [r for r in doc["results"] if r["scenario"] == scen["id"]]
        present = {r["route"] for r in results}
        routes = [rt for rt in scen["routes"] if rt in present]
        cell = {(r["size"], r["route"]): r for r in results}
        out += ["", f"### {scen['id']}: {scen['title']}", "",
                "| size | " + " | ".join(f"{rt} MiB/s · CPU s/GiB" for rt in routes) + " |",
                "|---|" + "---|" * len(routes)]  # fmt: skip
        for size in sorted({r["size"] for r in results}):
            cells = []
            for rt in routes:
                r = cell.get((size, rt))
                cells.append(f"{_range_cell(r['mib_per_s'])} · {_range_cell(r['cpu_s_per_gib'], 3)}" if r else "n/a")
            out.append(f"| {fmt_bytes(size)} | " + " | ".join(cells) + " |")
    for note in doc.get("notes") or []:
        out.append(f"\n- {note}")
    return "\n".join(out) + "\n"
