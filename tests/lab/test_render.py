from __future__ import annotations

from typing import Any

import pytest

from zcopy.lab import render
from zcopy.lab.schema import COUNTERS

MiB = 1 << 20
SIZE = 64 * MiB


def counters(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {k: 0 for k in COUNTERS}
    c.update(wall_s=0.1, syscalls={}, dirty_kb_before=1000, dirty_kb_after=1000)
    c.update(over)
    c["syscall_count"] = sum(c["syscalls"].values())
    c["mode_switches"] = 2 * c["syscall_count"]
    return c


def run(mode: str, route: str, requested: str | None = None, skipped: Any = (), cold: Any = None,
        force: Any = None, **c: Any) -> dict[str, Any]:  # fmt: skip
    return {"mode": mode, "route": route, "requested_route": requested, "skipped": [list(s) for s in skipped],
            "flow": f"{route} flow", "cpu_copies": 0, "dma_copies": 2, "nbytes": SIZE, "counters": counters(**c),
            "force": force, "cold": cold}  # fmt: skip


def doc(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"file": {"path": "/tmp/x", "size": SIZE, "generated": True, "kept": False, "fs_type": "ext4"},
            "machine": {"kernel": "6.1", "python": "3.11", "cpus": 2}, "steps": steps, "unavailable": [],
            "wall_s": 3.0}  # fmt: skip


def step(sid: str, *runs: dict[str, Any]) -> dict[str, Any]:
    return {"id": sid, "title": sid, "job": "x", "runs": list(runs)}


def tour_doc(send_cpu: float = 0.01, ctrl_cpu: float = 0.05) -> dict[str, Any]:
    force = {"dirty_kb_before": 70000, "dirty_kb_after": 100, "wall_s": 0.2, "disk_write_bytes": 0}
    return doc([
        step("traditional",
             run("cold", "readwrite", cold={"verified": True, "disk_read_bytes": SIZE, "expected_bytes": SIZE},
                 user_bytes=2 * SIZE, cpu_sys_s=0.3, disk_read_bytes=SIZE, force=force),
             run("warm", "readwrite", user_bytes=2 * SIZE, cpu_sys_s=0.2, syscalls={"preadv": 64, "pwritev": 64},
                 disk_write_bytes=SIZE, force=force)),
        step("mmap", run("warm", "mmap-edit", cpu_user_s=0.05, minor_faults=300, disk_write_bytes=4 * MiB,
                         force=force)),
        step("sendfile", run("warm", "sendfile", cpu_sys_s=send_cpu, syscalls={"sendfile": 1})),
        step("read_send", run("warm", "readwrite", user_bytes=2 * SIZE, cpu_sys_s=ctrl_cpu,
                              syscalls={"preadv": 64, "write": 64})),
    ])  # fmt: skip


def test_units() -> None:
    assert render.fmt_bytes(0) == "0 B"
    assert render.fmt_bytes(1536) == "1.5 KiB"
    assert render.fmt_bytes(3 * 1 << 30) == "3.0 GiB"
    assert render.fmt_secs(0.0000005) == "0 µs" or render.fmt_secs(0.0000005) == "1 µs"
    assert render.fmt_secs(0.0123) == "12.3 ms"
    assert render.fmt_secs(2.5) == "2.50 s"
    assert render.fmt_rate(MiB, 0.5) == "2 MiB/s"
    assert render.fmt_rate(MiB, 0) == "—"


@pytest.mark.parametrize(("a", "b", "text"), [(1, 3, "3.0× less"), (3, 1, "3.0× more"), (1, 1.05, "about the same"),
                                              (0, 0, "the same")])  # fmt: skip
def test_fmt_ratio(a: float, b: float, text: str) -> None:
    assert render.fmt_ratio(a, b) == text


def test_text_table_aligns() -> None:
    out = render.text_table(["a", "num"], [["xx", "1"], ["y", "100"]], [False, True]).splitlines()
    assert out[0] == "a   num"
    assert out[2] == "xx    1"
    assert out[3] == "y   100"


def test_conclusions_are_computed_from_the_numbers() -> None:
    c = dict(render.conclusions(tour_doc(send_cpu=0.01, ctrl_cpu=0.05)))
    assert "128.0 MiB crossed user space (2.0× the file" in c["traditional"]
    assert "5.0× less CPU" in c["sendfile"] and "0 B crossing user space vs 128.0 MiB" in c["sendfile"]
    assert "dirtied only 4.0 MiB" in c["mmap"]
    assert "1 of 1 verified cold" in c["cold"]
    # Change the numbers, and the sentence follows them: sendfile now costs more than the control.
    c2 = dict(render.conclusions(tour_doc(send_cpu=0.2, ctrl_cpu=0.05)))
    assert "4.0× more CPU" in c2["sendfile"]


def test_cold_failure_is_reported() -> None:
    d = tour_doc()
    d["steps"][0]["runs"][0]["cold"] = {"verified": False, "disk_read_bytes": 0, "expected_bytes": SIZE,
                                        "note": "tmpfs"}  # fmt: skip
    c = dict(render.conclusions(d))
    assert "0 of 1 verified" in c["cold"] and "NOT cold: traditional" in c["cold"]
    assert "NOT verified" in render.step_block(1, d["steps"][0])


def test_fallback_is_visible() -> None:
    r = run("warm", "readwrite", requested="sendfile", skipped=[("sendfile", "EINVAL, refused")])
    note = render.route_note(r)
    assert "FALLBACK" in note and "sendfile: EINVAL, refused" in note
    d = tour_doc()
    d["steps"][2]["runs"][0] = r
    assert "sendfile (unavailable here; the readwrite fallback ran)" in dict(render.conclusions(d))["sendfile"]


def test_render_tour_has_every_section() -> None:
    text = render.render_tour(tour_doc())
    for part in ("── 1. traditional", "flow    readwrite flow", "mode switches", "── comparison",
                 "what the numbers show", "force: Dirty 70000 kB → 100 kB"):  # fmt: skip
        assert part in text
    rows = render.comparison_rows(tour_doc())
    assert len(rows) == 5 and all(len(r) == len(render.COMPARISON_HEADERS) for r in rows)


def bench_doc() -> dict[str, Any]:
    def res(route: str, size: int, cpu: float, used: str | None = None) -> dict[str, Any]:
        s = {"median": cpu, "min": cpu * 0.9, "max": cpu * 1.1, "n": 3}
        return {"scenario": "file-socket", "route": route, "route_used": used or route, "size": size,
                "iterations": 1, "wall_s": s, "cpu_s": s, "mib_per_s": {"median": 100.0, "min": 90.0, "max": 110.0,
                "n": 3}, "cpu_s_per_gib": s, "user_bytes": 0, "syscall_count": 1}  # fmt: skip

    return {"scenarios": [{"id": "file-socket", "title": "file → socket", "routes": ["sendfile", "readwrite"]}],
            "results": [res("readwrite", 4096, 0.4), res("sendfile", 4096, 0.1), res("readwrite", 65536, 0.2),
                        res("sendfile", 65536, 0.3, "readwrite")]}  # fmt: skip


def test_bench_tables_and_cpu_saved() -> None:
    text = render.bench_tables(bench_doc())
    assert "sendfile MiB/s" in text and "readwrite CPU s/GiB" in text
    assert "0.100 (0.090–0.110)" in text
    assert "fallbacks taken: sendfile→readwrite" in text
    saved = {(s[1], s[2]): s[3] for s in render.cpu_saved(bench_doc())}
    assert saved[("sendfile", 4096)] == pytest.approx(75.0)
    assert saved[("sendfile", 65536)] == pytest.approx(-50.0)


def explain_doc(**over: Any) -> dict[str, Any]:
    d = {"file": "/f", "size": 10, "to": "file", "target": "t", "nbytes": 10, "src_kind": "file",
         "dst_kind": "file", "forced_route": None, "route": "sendfile",
         "order": ["copy_file_range", "sendfile", "readwrite"],
         "skipped": [["copy_file_range", "EXDEV, source and target are on different filesystems"]],
         "static_reasons": {"sendfile": None, "splice": None, "copy_file_range": None, "mmap": None,
                            "readwrite": None},
         "model": {"line": "l", "cpu_copies": 1, "dma_copies": 2, "user_space": False}, "counters": counters()}
    d.update(over)  # fmt: skip
    return d


def test_route_verdicts_explain_why_not() -> None:
    v = {r: (verdict, why) for r, verdict, why in render.route_verdicts(explain_doc())}
    assert v["sendfile"][0] == "USED" and "first route in the file→file order that worked" in v["sendfile"][1]
    assert v["copy_file_range"] == ("gave up", "EXDEV, source and target are on different filesystems")
    assert v["readwrite"][0] == "not tried"
    assert v["mmap"][0] == "not used"
    forced = {r: verdict for r, verdict, _ in render.route_verdicts(explain_doc(forced_route="sendfile", skipped=[]))}
    assert forced == {"sendfile": "USED", "splice": "not tried", "copy_file_range": "not tried", "mmap": "not tried",
                      "readwrite": "not tried"}  # fmt: skip
    assert "EXDEV" in render.render_explain(explain_doc())


def test_sendfile_sentence_counts_the_receiver_when_known() -> None:
    d = tour_doc(send_cpu=0.01, ctrl_cpu=0.05)
    d["steps"][2]["runs"][0]["peer"] = {"role": "receiver", "cpu_user_s": 0.0, "cpu_sys_s": 0.09}
    d["steps"][3]["runs"][0]["peer"] = {"role": "receiver", "cpu_user_s": 0.0, "cpu_sys_s": 0.05}
    c = dict(render.conclusions(d))
    assert "counting the receiving process too: about the same CPU (100.0 ms vs 100.0 ms)" in c["sendfile"]
    assert "both ends together 100.0 ms" in render.step_block(3, d["steps"][2])
