"""The small SVG writer: escaping, attribute names, and the text measure the diagrams wrap with."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from zcopy.lab import svg


def test_elements_escape_and_drop_none() -> None:
    # Floats keep one decimal (0.1 px is finer than any screen shows); None leaves the attribute out.
    out = svg.el("g", svg.text(1, 2.5, "a < b & c"), class_="x", data_from="p'q\"r", fill=None, stroke_width=1.26)
    assert out == ('<g class="x" data-from="p&#x27;q&quot;r" stroke-width="1.3">'
                   '<text x="1" y="2.5">a &lt; b &amp; c</text></g>')  # fmt: skip
    root = ET.fromstring(out)
    assert root.attrib["data-from"] == "p'q\"r" and root[0].text == "a < b & c"
    assert svg.el("rect", width=3.0) == '<rect width="3"/>'


def test_document_is_well_formed_and_titled() -> None:
    doc = svg.document(100, 50, svg.el("rect", width=1, height=1), label="a <title>")
    root = ET.fromstring(doc)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.attrib["viewBox"] == "0 0 100 50"
    assert root[0].text == "a <title>"


def test_width_counts_cjk_as_a_full_em() -> None:
    assert svg.width("ab", 10) == 2 * svg.LATIN_EM * 10
    assert svg.width("零拷贝", 10) == 30


def test_wrap_keeps_lines_within_the_width() -> None:
    lines = svg.wrap("page references; NIC gathers by SG-DMA", 100, 10)
    assert " ".join(lines) == "page references; NIC gathers by SG-DMA"
    assert len(lines) > 1 and all(svg.width(ln, 10) <= 100 for ln in lines)
    assert svg.wrap("", 100, 10) == []
    assert svg.wrap("unbreakable-very-long-word", 20, 10) == ["unbreakable-very-long-word"]
