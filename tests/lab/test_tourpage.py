"""The tour report page, built from a saved real tour: every path, its article section, its diagram and figures
(the numbers on the page are the JSON's), offline-only assets; and the page opened in headless Chromium."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from zcopy.lab import tourpage
from zcopy.lab.render import fmt_bytes

# A real `zcopy tour --json` run (default 256 MiB) on the project's machine (ext4, kernel 6.18, 2 CPUs): every
# path, route and counter in it is one the tour really produced, the O_DIRECT step included.
TOUR_JSON = Path(__file__).parent / "data" / "tour.json"


@pytest.fixture
def saved_tour() -> dict[str, Any]:
    return json.loads(TOUR_JSON.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


class Collect(HTMLParser):
    """Every element's attributes and the text directly inside it, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.stack: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text: list[str] = []
        self.elements.append((tag, {k: v or "" for k, v in attrs}, text))
        if tag not in ("meta", "link", "br", "rect", "line", "polygon", "path"):
            self.stack.append(text)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and tag not in ("meta", "link", "br"):
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack:
            self.stack[-1].append(data)


def elements(page: str) -> list[tuple[str, dict[str, str], str]]:
    c = Collect()
    c.feed(page)
    return [(t, a, "".join(x)) for t, a, x in c.elements]


def value_at(run: dict[str, Any], key: str) -> Any:
    v: Any = run
    for part in key.split("."):
        v = v[part]
    return v


def test_files_of_the_report(saved_tour: dict[str, Any]) -> None:
    files = tourpage.build(saved_tour)
    paths = [f"paths/{i}-{s['id']}.svg" for i, s in enumerate(saved_tour["steps"], 1)]
    assert set(files) == {"index.html", "report.css", "tour.json", "chart.svg", "legend.svg", *paths}
    assert json.loads(files["tour.json"]) == saved_tour
    for name in ("chart.svg", "legend.svg", *paths):
        ET.fromstring(files[name])  # each SVG stands alone too


def test_every_path_is_on_the_page_with_its_article_section(saved_tour: dict[str, Any]) -> None:
    page = tourpage.build(saved_tour)["index.html"]
    sections = [a for t, a, _ in elements(page) if t == "section" and a.get("class") == "path"]
    assert [a["data-step"] for a in sections] == [s["id"] for s in saved_tour["steps"]]
    for zh, en in tourpage.ARTICLE_SECTIONS.values():
        assert zh in page and en in page
    assert "三:零拷贝" in page and "一:了解IO基础概念" in page and "二:数据流动的层次结构" in page
    expected = {"traditional": "1.传统IO文件读写", "mmap": "2.mmap 零拷贝技术", "sendfile": "3.sendFile 零拷贝技术",
                "read_send": "1.传统IO文件读写", "copy_file_range": None, "splice_recv": None,
                "direct_copy": "一:了解IO基础概念"}  # fmt: skip
    for sid, zh in expected.items():
        step = next(s for s in saved_tour["steps"] if s["id"] == sid)
        assert (tourpage.article_section(step) or (None,))[0] == zh
        part = page.split(f"id='path-{sid}'")[1].split("</header>")[0]
        assert (zh or "beyond the article") in part


def test_every_arrow_of_every_model_is_on_the_page(saved_tour: dict[str, Any]) -> None:
    page = tourpage.build(saved_tour)["index.html"]
    for step in saved_tour["steps"]:
        block = page.split(f"id='path-{step['id']}'")[1].split("</section>")[0]
        model = step["runs"][0]["model"]
        drawn = [(a["data-from"], a["data-to"], a["data-kind"]) for t, a, _ in elements(block)
                 if t == "g" and a.get("class") == "hop"]  # fmt: skip
        assert drawn == [(h["from"], h["to"], h["kind"]) for h in model["hops"]], step["id"]


def test_the_numbers_on_the_page_are_the_jsons(saved_tour: dict[str, Any]) -> None:
    page = tourpage.build(saved_tour)["index.html"]
    els = elements(page)
    runs = {f"{s['id']}:{r['mode']}": r for s in saved_tour["steps"] for r in s["runs"]}
    formatters = {key: fmt for _, keys in tourpage.FIGURES for key, fmt in keys}
    seen: dict[str, set[str]] = {}
    current = None
    for tag, attrs, text in els:
        if tag == "td" and "data-run" in attrs:
            current = attrs["data-run"]
        if tag == "span" and attrs.get("class") == "v":
            assert current is not None
            run, key = runs[current], attrs["data-key"]
            assert json.loads(attrs["data-value"]) == value_at(run, key), (current, key)
            assert text == formatters[key](value_at(run, key)), (current, key)
            seen.setdefault(current, set()).add(key)
    assert set(seen) == set(runs)  # every run has its figures column
    for name, run in runs.items():
        wanted = {"counters.wall_s", "counters.cpu_user_s", "counters.cpu_sys_s", "counters.syscall_count",
                  "counters.mode_switches", "counters.user_bytes", "counters.disk_read_bytes",
                  "counters.disk_write_bytes"}  # fmt: skip
        if run["force"]:
            wanted |= {"force.dirty_kb_before", "force.dirty_kb_after", "force.wall_s"}
        if run["peer"]:
            wanted |= {"peer.cpu_user_s", "peer.cpu_sys_s"}
        assert wanted <= seen[name], (name, wanted - seen[name])


def test_the_arrow_tables_carry_each_runs_measure(saved_tour: dict[str, Any]) -> None:
    page = tourpage.build(saved_tour)["index.html"]
    for step in saved_tour["steps"]:
        block = page.split(f"<table class=arrows data-step='{step['id']}'>")[1].split("</table>")[0]
        cells = [a for t, a, _ in elements(block) if t == "td" and "data-key" in a]
        runs = step["runs"]
        hops = step["runs"][0]["model"]["hops"]
        assert len(cells) == len(hops) * len(runs)
        for i, cell in enumerate(cells):
            run = runs[i % len(runs)]
            key, _, split = cell["data-key"].partition("/")
            expected = value_at(run, key) // (int(split) if split else 1)
            assert int(cell["data-value"]) == expected, (step["id"], cell)


def test_sentences_and_comparison_are_on_the_page(saved_tour: dict[str, Any]) -> None:
    page = tourpage.build(saved_tour)["index.html"]
    text = " ".join(t for _, _, t in elements(page))
    for c in saved_tour["conclusions"]:
        assert c["sentence"].partition(": ")[2] in text
    for row in saved_tour["comparison"]["rows"]:
        for cell in row:
            assert f"<td>{cell}</td>" in page


def test_the_page_works_offline(saved_tour: dict[str, Any]) -> None:
    files = tourpage.build(saved_tour)
    page, css = files["index.html"], files["report.css"]
    assert "<script" not in page and "@import" not in css
    # One font, inline (data: URL): the CJK glyphs the page quotes; nothing is fetched.
    assert re.findall(r"url\(([a-z]+):", css) == ["data"] and css.count("@font-face") == 1
    for url in re.findall(r"https?://[^\s\"'<>]+", page + css):
        assert url == "http://www.w3.org/2000/svg", url  # the SVG namespace name, never fetched
    for _, attrs, _ in elements(page):
        for name in ("href", "src"):
            ref = attrs.get(name)
            if ref and not ref.startswith("#") and name != "xmlns":
                assert ref in files, ref  # every asset the page loads is in the folder
    assert "@media print" in css


def test_a_tour_saved_before_runs_carried_their_model_draws_the_same(saved_tour: dict[str, Any]) -> None:
    old = copy.deepcopy(saved_tour)
    for s in old["steps"]:
        for r in s["runs"]:
            del r["model"]
    assert tourpage.build(old)["index.html"] == tourpage.build(saved_tour)["index.html"]


def test_a_fallback_route_is_visible(saved_tour: dict[str, Any]) -> None:
    doc = copy.deepcopy(saved_tour)
    cfr = next(s for s in doc["steps"] if s["id"] == "copy_file_range")
    for r in cfr["runs"]:
        r["route"], r["skipped"] = "sendfile", [["copy_file_range", "EXDEV, source and target differ"]]
        del r["model"]  # redrawn from the route that ran
    page = tourpage.build(doc)["index.html"]
    block = page.split("id='path-copy_file_range'")[1].split("</section>")[0]
    assert "FALLBACK: asked for copy_file_range" in block and "route <b>sendfile</b>" in block


def test_user_text_is_escaped(saved_tour: dict[str, Any]) -> None:
    doc = copy.deepcopy(saved_tour)
    doc["steps"][0]["title"] = "<script>alert(1)</script>"
    doc["unavailable"] = ["a <b> route"]
    page = tourpage.build(doc)["index.html"]
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &lt;b&gt; route" in page


def test_a_step_the_page_does_not_know_draws_from_its_model(saved_tour: dict[str, Any]) -> None:
    # How the O_DIRECT step (or any later one) appears: only its JSON, no code naming it.
    doc = copy.deepcopy(saved_tour)
    cfr = next(s for s in doc["steps"] if s["id"] == "copy_file_range")
    new = copy.deepcopy(cfr)
    new.update(id="direct", title="direct: cold file → file by O_DIRECT", article="not in the article (O_DIRECT)")
    hops = [
        {"from": "disk", "to": "user buffer (aligned)", "kind": "DMA", "note": "O_DIRECT read"},
        {"from": "user buffer (aligned)", "to": "disk", "kind": "DMA", "note": "O_DIRECT write"},
    ]
    for r in new["runs"]:
        r["route"] = "direct"
        r["model"] = {"route": "direct", "line": "disk ─DMA→ user buffer (aligned) ─DMA→ disk", "cpu_copies": 0,
                      "dma_copies": 2, "user_space": True, "hops": hops}  # fmt: skip
    doc["steps"].append(new)
    files = tourpage.build(doc)
    assert f"paths/{len(doc['steps'])}-direct.svg" in files
    block = files["index.html"].split("id='path-direct'")[1].split("</section>")[0]
    assert [a["data-kind"] for t, a, _ in elements(block) if t == "g" and a.get("class") == "hop"] == ["DMA", "DMA"]
    assert "beyond the article" in block and fmt_bytes(new["runs"][0]["counters"]["disk_read_bytes"]) in block


# ---------------------------------------------------------------- in a real browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# As root (CI containers) Chromium needs --no-sandbox; the rest keeps it from reaching for a network this
# machine does not have, and a fresh profile keeps runs independent.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]  # fmt: skip


def browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def test_the_page_renders_in_headless_chromium(saved_tour: dict[str, Any], tmp_path: Path) -> None:
    exe = browser()
    if exe is None:
        pytest.skip("no Chromium installed (apt-get install chromium; .ci/run installs it)")
    image = pytest.importorskip("PIL.Image", reason="the screenshot check reads the PNG with Pillow (dev extra)")
    out = tmp_path / "report"
    out.mkdir()
    for name, text in tourpage.build(saved_tour).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2400",
             f"--screenshot={shot}", (out / "index.html").as_uri()],
            capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile},
        )  # fmt: skip
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console  # the page has no script: any console message is an error to look at
    assert shot.is_file(), proc.stderr[-2000:]
    with image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1280, 2400)
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 200  # text, diagrams and chart: far from a blank page
        # The header's dark gradient comes from report.css: the stylesheet loaded from the folder.
        assert sum(rgb.getpixel((20, 20))) < 3 * 90  # type: ignore[arg-type]
        # A diagram drew: somewhere below the header there is the CPU arrows' red.
        assert any(c == (220, 38, 38) for _, c in colours)
