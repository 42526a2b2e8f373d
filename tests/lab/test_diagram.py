"""The per-path diagram, drawn from a saved real tour: every hop of every copy model is an arrow of its kind, the
lanes put user space above the kernel line, and the figures on the arrows are the run's counters."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from zcopy.lab import diagram, flows
from zcopy.lab.render import fmt_bytes, fmt_secs
from zcopy.routes import copy_model

# A real `zcopy tour --json` run (default 256 MiB) on the project's machine (ext4, kernel 6.18, 2 CPUs): every
# path, route and counter in it is one the tour really produced, the O_DIRECT step included.
TOUR_JSON = Path(__file__).parent / "data" / "tour.json"


@pytest.fixture
def saved_tour() -> dict[str, Any]:
    return json.loads(TOUR_JSON.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


NS = {"s": "http://www.w3.org/2000/svg"}


def parse(svg_text: str) -> ET.Element:
    return ET.fromstring(svg_text)  # well-formed XML, or this raises


def hops_drawn(root: ET.Element) -> list[dict[str, str]]:
    return [g.attrib for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "hop"]


def node_y(root: ET.Element) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        if g.get("class") == "node":
            rect = g.find("s:rect", NS)
            assert rect is not None
            out.setdefault(g.attrib["data-node"], []).append(float(rect.attrib["y"]))
    return out


def kernel_line_y(root: ET.Element) -> float:
    lines = [ln for ln in root.iter("{http://www.w3.org/2000/svg}line") if ln.get("class") == "kernel-line"]
    assert len(lines) == 1
    return float(lines[0].attrib["y1"])


def test_every_arrow_of_every_model_is_drawn_with_its_kind(saved_tour: dict[str, Any]) -> None:
    assert [s["id"] for s in saved_tour["steps"]] == [
        "traditional", "mmap", "sendfile", "read_send", "copy_file_range", "direct_copy", "readwrite_copy",
        "splice_recv", "recv_write",
    ]  # fmt: skip
    for step in saved_tour["steps"]:
        model = diagram.model_of(step["runs"][0], step["job"])
        assert model is not None and model["hops"], step["id"]
        root = parse(diagram.draw(model, step["runs"], step["id"]))
        drawn = hops_drawn(root)
        assert [(d["data-index"], d["data-from"], d["data-to"], d["data-kind"]) for d in drawn] == [
            (str(i), h["from"], h["to"], h["kind"]) for i, h in enumerate(model["hops"], 1)
        ], step["id"]
        for g in root.iter("{http://www.w3.org/2000/svg}g"):
            if g.get("class") != "hop":
                continue
            style = diagram.KINDS[g.attrib["data-kind"]]
            stroke = g.find("s:line", NS) if g.find("s:line", NS) is not None else g.find("s:path", NS)
            assert stroke is not None
            assert stroke.attrib["stroke"] == style.colour
            assert stroke.attrib.get("stroke-dasharray") == style.dash
            assert g.find("s:polygon", NS) is not None  # the arrowhead
            pill = next(t.text for t in g.iter("{http://www.w3.org/2000/svg}text"))
            assert pill == f"{g.attrib['data-index']} · {g.attrib['data-kind']}"


def test_the_three_kinds_look_different() -> None:
    styles = list(diagram.KINDS.values())
    assert len({s.colour for s in styles}) == 3 and len({s.dash for s in styles}) == 3  # apart in colour and print


def test_user_space_is_above_the_kernel_line_and_hardware_below(saved_tour: dict[str, Any]) -> None:
    for step in saved_tour["steps"]:
        model = diagram.model_of(step["runs"][0], step["job"])
        assert model is not None
        root = parse(diagram.draw(model, step["runs"], step["id"]))
        line = kernel_line_y(root)
        ys = node_y(root)
        for name, values in ys.items():
            for y in values:
                assert (y < line) == (diagram.zone(name) == "user"), (step["id"], name)
        kernel = [y for n, v in ys.items() for y in v if diagram.zone(n) == "kernel"]
        hardware = [y for n, v in ys.items() for y in v if diagram.zone(n) == "hardware"]
        assert max(kernel, default=line) < min(hardware)  # (O_DIRECT has no kernel node: its lane stays empty)


def test_a_path_without_user_space_says_so(saved_tour: dict[str, Any]) -> None:
    send = next(s for s in saved_tour["steps"] if s["id"] == "sendfile")
    model = diagram.model_of(send["runs"][0], send["job"])
    assert model is not None
    assert "no byte enters user space on this path" in diagram.draw(model, send["runs"], "sendfile")


def test_the_o_direct_path_draws_its_dma_into_user_space_and_the_bypassed_kernel(saved_tour: dict[str, Any]) -> None:
    step = next(s for s in saved_tour["steps"] if s["id"] == "direct_copy")
    model = diagram.model_of(step["runs"][0], step["job"])
    assert model is not None and model["route"] == "direct"
    text = diagram.draw(model, step["runs"], "direct")
    root = parse(text)
    assert [(d["data-from"], d["data-to"], d["data-kind"]) for d in hops_drawn(root)] == [
        (h["from"], h["to"], h["kind"]) for h in model["hops"]
    ]
    assert "no kernel buffer: the bytes bypass the page cache" in text
    assert node_y(root)["user buffer"][0] < kernel_line_y(root) < min(node_y(root)["disk"])
    for run in step["runs"]:  # O_DIRECT reads the disk warm too: both runs show it on the arrow
        assert fmt_bytes(run["counters"]["disk_read_bytes"]) in text


def test_arrow_figures_are_the_runs_counters(saved_tour: dict[str, Any]) -> None:
    steps = {s["id"]: s for s in saved_tour["steps"]}
    trad = steps["traditional"]
    cold, warm = trad["runs"]
    hops = diagram.model_of(cold, trad["job"])["hops"]  # type: ignore[index]
    # disk → page cache: what the disk delivered, cold (everything) and warm (nothing: cached)
    assert diagram.arrow_labels(hops[0], hops, trad["runs"]) == [
        f"cold {fmt_bytes(cold['counters']['disk_read_bytes'])}",
        f"warm {fmt_bytes(warm['counters']['disk_read_bytes'])}",
    ]
    # read() and write(): half of the user-space bytes each
    for hop in hops[1:3]:
        m = diagram.measure(hop, hops, warm)
        assert m.nbytes == warm["counters"]["user_bytes"] // 2 and m.key == "counters.user_bytes/2"
    # the write-back: bytes dirtied for the disk and how long force() took
    m = diagram.measure(hops[3], hops, cold)
    assert (m.nbytes, m.secs) == (cold["counters"]["disk_write_bytes"], cold["force"]["wall_s"])
    assert m.label() == f"{fmt_bytes(m.nbytes)} · force {fmt_secs(cold['force']['wall_s'])}"

    mm = steps["mmap"]
    hops = diagram.model_of(mm["runs"][0], mm["job"])["hops"]  # type: ignore[index]
    ref = next(h for h in hops if h["kind"] == "ref")
    m = diagram.measure(ref, hops, mm["runs"][-1])
    c = mm["runs"][-1]["counters"]
    assert m.nbytes == c["user_bytes"] == 0 and m.extra == f"{c['minor_faults'] + c['major_faults']} page faults"

    send = steps["sendfile"]
    hops = diagram.model_of(send["runs"][0], send["job"])["hops"]  # type: ignore[index]
    to_nic = next(h for h in hops if h["to"] == "NIC")
    assert diagram.measure(to_nic, hops, send["runs"][-1]).nbytes == send["runs"][-1]["nbytes"]
    svg_text = diagram.draw(diagram.model_of(send["runs"][0], send["job"]), send["runs"], "s")  # type: ignore[arg-type]
    assert fmt_bytes(send["runs"][0]["counters"]["disk_read_bytes"]) in svg_text


def test_a_run_saved_without_its_model_is_redrawn_from_route_and_job(saved_tour: dict[str, Any]) -> None:
    for step in saved_tour["steps"]:
        run = copy.deepcopy(step["runs"][0])
        saved = run.pop("model")
        assert diagram.model_of(run, step["job"]) == saved
        assert saved["line"] == run["flow"]  # the model drawn is the one the text tour printed


def test_model_of_unknown_route_is_none() -> None:
    assert flows.model_of("teleport", "file→file") is None
    assert flows.model_of("sendfile", "file edit") is None
    assert diagram.model_of({"route": "teleport"}, "file→file") is None


def test_a_route_added_later_draws_without_a_special_case() -> None:
    # An O_DIRECT-like model: the disk DMAs straight into an aligned user buffer and back, no page cache.
    model = {
        "hops": [
            {"from": "disk", "to": "user buffer (aligned)", "kind": "DMA", "note": "O_DIRECT read"},
            {"from": "user buffer (aligned)", "to": "disk", "kind": "DMA", "note": "O_DIRECT write"},
        ]
    }
    counters = {"disk_read_bytes": 4096, "disk_write_bytes": 4096, "user_bytes": 8192, "minor_faults": 0,
                "major_faults": 0}  # fmt: skip
    runs = [{"mode": "warm", "nbytes": 4096, "counters": counters, "force": None}]
    root = parse(diagram.draw(model, runs, "direct"))
    assert [d["data-kind"] for d in hops_drawn(root)] == ["DMA", "DMA"]
    assert node_y(root)["user buffer (aligned)"][0] < kernel_line_y(root) < node_y(root)["disk"][0]
    assert diagram.lanes_of(model["hops"]) == [("user buffer", "user"), ("disk", "hardware")]


def test_lanes_keep_the_articles_order() -> None:
    m = copy_model("splice", "socket", "file").as_dict()
    assert diagram.lanes_of(m["hops"]) == [
        ("page cache", "kernel"), ("pipe buffer", "kernel"), ("socket buffer", "kernel"),
        ("disk", "hardware"), ("NIC", "hardware"),
    ]  # fmt: skip


@pytest.mark.parametrize("node,lane,zone", [
    ("user buffer (modify old↔new)", "user buffer", "user"),
    ("page cache (mapped into user space)", "page cache", "kernel"),
    ("NIC", "NIC", "hardware"),
    ("pipe buffer", "pipe buffer", "kernel"),
])  # fmt: skip
def test_layer_and_zone(node: str, lane: str, zone: str) -> None:
    assert diagram.layer(node) == lane and diagram.zone(node) == zone


def test_text_is_escaped() -> None:
    model = {"hops": [{"from": "disk", "to": "page <cache> & co", "kind": "CPU", "note": ""}]}
    runs = [{"mode": "warm", "nbytes": 1, "counters": {"disk_read_bytes": 1}, "force": None}]
    text = diagram.draw(model, runs, "a <b> & c")
    parse(text)
    assert "page &lt;cache&gt; &amp; co" in text and "<b>" not in text
