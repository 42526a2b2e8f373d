"""One tour path drawn as the article draws it, from the copy model the run used: layers as lanes (user space
above the kernel line, hardware below), one arrow per hop, DMA / CPU / page-reference arrows styled apart, and on
each arrow what this run measured for it. Pure: tour JSON (plain dicts) in, SVG text out.

The arrows come only from the model's hops (the same CopyModel data the text tour's flow line is rendered from),
and the lanes only from the hop endpoints, so a route added later draws without a change here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zcopy.lab import flows, svg
from zcopy.lab.render import fmt_bytes, fmt_secs
from zcopy.routes import CPU, DMA, REF

Hop = Mapping[str, Any]  # {"from", "to", "kind", "note"}, as CopyModel.as_dict() writes it
Run = Mapping[str, Any]


@dataclass(frozen=True)
class KindStyle:
    colour: str
    dash: str | None  # distinct dashes keep the kinds apart in a black-and-white print too
    stroke: float
    name: str
    meaning: str


KINDS: dict[str, KindStyle] = {
    DMA: KindStyle("#6d28d9", "9 5", 2.6, "DMA copy", "a device copies the bytes; the CPU only sets it up"),
    CPU: KindStyle("#dc2626", None, 3.4, "CPU copy", "the CPU copies every byte"),
    REF: KindStyle("#059669", "2 5", 2.8, "page reference", "no byte is copied: page references change hands"),
}
UNKNOWN_KIND = KindStyle("#525252", "4 3", 2.4, "other", "")

ZONES = ("user", "kernel", "hardware")
ZONE_NAME = {"user": "USER SPACE", "kernel": "KERNEL", "hardware": "HARDWARE"}
ZONE_BG = {"user": "#fff8e6", "kernel": "#edf3fc", "hardware": "#f2f1ef"}
NODE_FILL = {"user": "#fde9b0", "kernel": "#d3e3fa", "hardware": "#e2dfdb"}
NODE_STROKE = {"user": "#c98a00", "kernel": "#3a6fc4", "hardware": "#7a736b"}
# Lanes the article names keep its order (page cache nearest the disk's side); others follow in hop order.
LANE_ORDER = ("page cache", "pipe buffer", "socket buffer", "disk", "NIC")
HARDWARE = ("disk", "nic", "device")

# Geometry (px in the viewBox): a column per node, a lane per layer. COL - NODE_W leaves room for an arrow label
# between two columns; LANE_H - node height leaves a free band between lanes where diagonal arrows' labels sit.
GUTTER = 116
COL = 162
NODE_W = 116
LANE_H = 104
PAD = 10
LABEL_SIZE = 13
SMALL = 10.5


def layer(node: str) -> str:
    """The lane a node sits in: its name without the parenthesised detail ("user buffer (modify old↔new)")."""
    return node.split(" (", 1)[0].strip()


def detail(node: str) -> str:
    _, sep, rest = node.partition(" (")
    return rest.removesuffix(")") if sep else ""


def zone(node: str) -> str:
    name = layer(node).lower()
    if "user" in name:
        return "user"
    if name in HARDWARE:
        return "hardware"
    return "kernel"


def model_of(run: Run, job: str = "") -> dict[str, Any] | None:
    """The run's copy model as JSON: carried by the run, or (tour JSON saved before runs carried it) rebuilt
    from the route and the step's job with the same functions the tour uses."""
    m = run.get("model")
    if isinstance(m, Mapping):
        return dict(m)
    rebuilt = flows.model_of(str(run.get("route", "")), job)
    return rebuilt.as_dict() if rebuilt is not None else None


def nodes_of(hops: Sequence[Hop]) -> list[str]:
    return [hops[0]["from"], *(h["to"] for h in hops)] if hops else []


def lanes_of(hops: Sequence[Hop]) -> list[tuple[str, str]]:
    """(layer, zone) top to bottom: user space first, then the kernel, then hardware."""
    seen: list[str] = []
    for n in nodes_of(hops):
        if layer(n) not in seen:
            seen.append(layer(n))

    def rank(name: str) -> tuple[int, int, int]:
        known = LANE_ORDER.index(name) if name in LANE_ORDER else len(LANE_ORDER)
        return ZONES.index(zone(name)), known, seen.index(name)

    return [(name, zone(name)) for name in sorted(seen, key=rank)]


# ---------------------------------------------------------------- what was measured on each arrow


@dataclass(frozen=True)
class Measure:
    """What one run measured for one hop: bytes, a time where a counter exists, and where both come from."""

    nbytes: int
    secs: float | None
    source: str
    key: str  # where nbytes is in the run's JSON ("counters.user_bytes"; "/2" when split over two hops)
    extra: str = ""

    def label(self) -> str:
        out = fmt_bytes(self.nbytes)
        if self.secs is not None:
            out += f" · force {fmt_secs(self.secs)}"
        if self.extra:
            out += f" · {self.extra}"
        return out


def measure(hop: Hop, hops: Sequence[Hop], run: Run) -> Measure:
    """The counter that belongs to this hop: the disk counters for the disk's arrows, zcopy's user-space byte
    count for arrows into and out of user space, the bytes the route moved for the kernel's own arrows."""
    c = run["counters"]
    src, dst = layer(hop["from"]), layer(hop["to"])
    if src == "disk":
        return Measure(int(c["disk_read_bytes"]), None, "read from the disk (/proc/self/io read_bytes)",
                       "counters.disk_read_bytes")
    if dst == "disk":
        force = run.get("force")
        secs = float(force["wall_s"]) if force else None
        how = "; force() waited for writeback" if force else "; written back later by the kernel"
        return Measure(int(c["disk_write_bytes"]), secs, "dirtied for the disk (/proc/self/io write_bytes)" + how,
                       "counters.disk_write_bytes")
    if "NIC" in (src, dst):
        return Measure(int(run["nbytes"]), None, "bytes through the socket (loopback stands in for the NIC)", "nbytes")
    if zone(hop["from"]) == "user" or zone(hop["to"]) == "user":
        if hop["kind"] == REF:
            faults = int(c["minor_faults"]) + int(c["major_faults"])
            return Measure(int(c["user_bytes"]), None, "bytes copied through user space (zcopy's count): the "
                           "pages are mapped, the page faults map them", "counters.user_bytes",
                           f"{faults} page faults")  # fmt: skip
        crossing = [h for h in hops if h["kind"] != REF and "user" in (zone(h["from"]), zone(h["to"]))]
        share = int(c["user_bytes"]) // max(1, len(crossing))
        split = f", split over its {len(crossing)} user-space hops" if len(crossing) > 1 else ""
        key = "counters.user_bytes" + (f"/{len(crossing)}" if len(crossing) > 1 else "")
        return Measure(share, None, f"crossed user space (zcopy's count{split})", key)
    return Measure(int(run["nbytes"]), None, "moved inside the kernel (bytes the route reported)", "nbytes")


def arrow_labels(hop: Hop, hops: Sequence[Hop], runs: Sequence[Run]) -> list[str]:
    """The text on one arrow: one line when every run measured the same, else one line per run (cold, warm)."""
    per_run = [(str(r["mode"]), measure(hop, hops, r).label()) for r in runs]
    if len({label for _, label in per_run}) == 1:
        return [per_run[0][1]]
    return [f"{mode} {label}" for mode, label in per_run]


# ---------------------------------------------------------------- drawing


@dataclass(frozen=True)
class Box:
    x: float  # centre
    y: float
    hw: float  # half width / height
    hh: float


def _node(box: Box, name: str, z: str) -> str:
    lines = svg.wrap(detail(name), NODE_W - 10, SMALL) if detail(name) else []
    parts = [svg.el("rect", x=box.x - box.hw, y=box.y - box.hh, width=2 * box.hw, height=2 * box.hh, rx=9,
                    fill=NODE_FILL[z], stroke=NODE_STROKE[z], stroke_width=1.4)]  # fmt: skip
    top = box.y - (len(lines) * (SMALL + 2)) / 2 + 4.5
    parts.append(svg.text(box.x, top, layer(name), text_anchor="middle", font_size=13, font_weight=700,
                          fill="#1f2937"))  # fmt: skip
    for i, ln in enumerate(lines):
        parts.append(svg.text(box.x, top + (i + 1) * (SMALL + 2) + 1, ln, text_anchor="middle", font_size=SMALL,
                              fill="#4b5563"))  # fmt: skip
    return svg.el("g", *parts, class_="node", data_node=name)


def _edge_point(box: Box, dx: float, dy: float) -> float:
    """How far along the unit direction (dx, dy) from the box centre its border is."""
    tx = box.hw / abs(dx) if dx else float("inf")
    ty = box.hh / abs(dy) if dy else float("inf")
    return min(tx, ty)


def _head(x: float, y: float, ux: float, uy: float, colour: str) -> str:
    """A filled arrowhead with its tip at (x, y), pointing along (ux, uy)."""
    length, half = 12.0, 6.0
    bx, by = x - ux * length, y - uy * length
    pts = [(x, y), (bx - uy * half, by + ux * half), (bx + uy * half, by - ux * half)]
    return svg.el("polygon", points=" ".join(f"{px:.1f},{py:.1f}" for px, py in pts), fill=colour)


def _label_block(cx: float, cy: float, number: int, kind: str, lines: Sequence[str]) -> str:
    """The arrow's label: a pill naming the copy kind, the measured figures under it."""
    st = KINDS.get(kind, UNKNOWN_KIND)
    pill = f"{number} · {kind}"
    pw = svg.width(pill, 11) + 16
    total = 18 + len(lines) * 14
    top = cy - total / 2
    parts = [
        svg.el("rect", x=cx - pw / 2, y=top, width=pw, height=18, rx=9, fill=st.colour),
        svg.text(cx, top + 13, pill, text_anchor="middle", font_size=11, font_weight=700, fill="#ffffff"),
    ]
    for i, ln in enumerate(lines):
        parts.append(svg.text(cx, top + 18 + 12 + i * 14, ln, text_anchor="middle", font_size=LABEL_SIZE,
                              font_weight=600, fill="#111827", stroke="#ffffff", stroke_width=4,
                              stroke_linejoin="round", paint_order="stroke"))  # fmt: skip
    return "".join(parts)


def _arrow(a: Box, b: Box, number: int, hop: Hop, lines: Sequence[str]) -> str:
    st = KINDS.get(hop["kind"], UNKNOWN_KIND)
    common = {"fill": "none", "stroke": st.colour, "stroke_width": st.stroke, "stroke_dasharray": st.dash,
              "stroke_linecap": "round"}  # fmt: skip
    if a.y == b.y:
        # Same lane (page cache → page cache): an arc from one node's top to the next one's, its label above.
        x0, x1 = a.x + a.hw * 0.45, b.x - b.hw * 0.45
        y = a.y - a.hh - 2
        apex_y = y - 30
        ctrl_y = 2 * apex_y - y  # a quadratic Bézier's midpoint lies halfway between its control and chord
        mid = (x0 + x1) / 2
        # The tangent at the end of a quadratic Bézier points from the control point to the end point.
        tx, ty = x1 - mid, y - ctrl_y
        n = (tx * tx + ty * ty) ** 0.5
        ux, uy = tx / n, ty / n
        path = svg.el("path", d=f"M{x0:.1f},{y:.1f} Q{mid:.1f},{ctrl_y:.1f} {x1 - ux * 9:.1f},{y - uy * 9:.1f}",
                      **common)  # fmt: skip
        block_h = 18 + len(lines) * 14
        body = path + _head(x1, y, ux, uy, st.colour)
        body += _label_block(mid, apex_y - block_h / 2 + 9, number, hop["kind"], lines)
    else:
        dx, dy = b.x - a.x, b.y - a.y
        n = (dx * dx + dy * dy) ** 0.5
        ux, uy = dx / n, dy / n
        sx, sy = a.x + ux * (_edge_point(a, ux, uy) + 3), a.y + uy * (_edge_point(a, ux, uy) + 3)
        ex, ey = b.x - ux * (_edge_point(b, ux, uy) + 3), b.y - uy * (_edge_point(b, ux, uy) + 3)
        line = svg.el("line", x1=round(sx, 1), y1=round(sy, 1), x2=round(ex - ux * 9, 1), y2=round(ey - uy * 9, 1),
                      **common)  # fmt: skip
        body = line + _head(ex, ey, ux, uy, st.colour)
        body += _label_block((a.x + b.x) / 2, (a.y + b.y) / 2, number, hop["kind"], lines)
    return svg.el("g", body, class_="hop", data_kind=hop["kind"], data_from=hop["from"], data_to=hop["to"],
                  data_index=number)  # fmt: skip


def draw(model: Mapping[str, Any], runs: Sequence[Run], title: str) -> str:
    """The diagram of one path as a standalone SVG document (also valid inline in HTML)."""
    hops: list[Hop] = list(model["hops"])
    nodes = nodes_of(hops)
    lanes = lanes_of(hops)
    # The article's three layers are always drawn, so an empty one shows what a path skips.
    empty_user = not any(z == "user" for _, z in lanes)
    if empty_user:
        lanes.insert(0, ("user space", "user"))
    empty_kernel = not any(z == "kernel" for _, z in lanes)
    if empty_kernel:
        lanes.insert(sum(1 for _, z in lanes if z == "user"), ("kernel buffers", "kernel"))
    lane_y = {name: PAD + i * LANE_H + LANE_H / 2 for i, (name, _) in enumerate(lanes)}
    w = GUTTER + max(2, len(nodes)) * COL
    h = PAD * 2 + len(lanes) * LANE_H
    parts: list[str] = []

    # Zone bands, lane labels, and the kernel line the article draws between user space and the kernel.
    for z in ZONES:
        rows = [i for i, (_, lz) in enumerate(lanes) if lz == z]
        if not rows:
            continue
        top, bottom = PAD + rows[0] * LANE_H, PAD + (rows[-1] + 1) * LANE_H
        parts.append(svg.el("rect", x=0, y=top, width=w, height=bottom - top, fill=ZONE_BG[z]))
        parts.append(svg.text(12, top + 17, ZONE_NAME[z], font_size=10, font_weight=700, letter_spacing=1.2,
                              fill=NODE_STROKE[z]))  # fmt: skip
    for i, (name, z) in enumerate(lanes):
        y = lane_y[name]
        parts.append(svg.text(12, y + 5, name, font_size=12.5, font_weight=600, fill="#374151"))
        if i and lanes[i - 1][1] == z:
            parts.append(svg.el("line", x1=GUTTER - 8, y1=y - LANE_H / 2, x2=w - 8, y2=y - LANE_H / 2,
                                stroke="#d6dbe3", stroke_width=1, stroke_dasharray="2 4"))  # fmt: skip
    user_rows = [i for i, (_, z) in enumerate(lanes) if z == "user"]
    kline = PAD + (user_rows[-1] + 1) * LANE_H
    parts.append(svg.el("line", x1=0, y1=kline, x2=w, y2=kline, stroke="#1f2937", stroke_width=2,
                        stroke_dasharray="10 5", class_="kernel-line"))  # fmt: skip
    parts.append(svg.text(w - 10, kline - 6, "user / kernel boundary", text_anchor="end", font_size=10.5,
                          font_style="italic", fill="#1f2937"))  # fmt: skip
    hw_rows = [i for i, (_, z) in enumerate(lanes) if z == "hardware"]
    if hw_rows:
        y = PAD + hw_rows[0] * LANE_H
        parts.append(svg.el("line", x1=0, y1=y, x2=w, y2=y, stroke="#8a8580", stroke_width=1.2))
    if empty_user:
        parts.append(svg.text(GUTTER + (w - GUTTER) / 2, lane_y["user space"] + 5,
                              "no byte enters user space on this path", text_anchor="middle", font_size=13,
                              font_style="italic", fill="#9a6b00"))  # fmt: skip

    if empty_kernel:
        # Low in the lane: the arrows crossing it put their labels at its middle.
        parts.append(svg.text(GUTTER + (w - GUTTER) / 2, lane_y["kernel buffers"] + LANE_H / 2 - 10,
                              "no kernel buffer: the bytes bypass the page cache", text_anchor="middle",
                              font_size=12, font_style="italic", fill=NODE_STROKE["kernel"]))  # fmt: skip

    boxes: list[Box] = []
    for i, name in enumerate(nodes):
        extra = len(svg.wrap(detail(name), NODE_W - 10, SMALL)) if detail(name) else 0
        boxes.append(Box(GUTTER + i * COL + COL / 2 - 10, lane_y[layer(name)], NODE_W / 2, 18 + extra * 6.5))
    for i, hop in enumerate(hops):
        parts.append(_arrow(boxes[i], boxes[i + 1], i + 1, hop, arrow_labels(hop, hops, runs)))
    # Nodes last: arrows start and end at their borders, and a node must never hide under a label.
    parts.extend(_node(b, n, zone(n)) for b, n in zip(boxes, nodes, strict=True))
    body = svg.el("rect", x=0, y=0, width=w, height=h, fill="#ffffff") + "".join(parts)
    return svg.document(w, h, body, label=title)


def arrow_rows(model: Mapping[str, Any], runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The arrows as rows for the table under a diagram: number, kind, ends, note, and per run its measure."""
    hops = list(model["hops"])
    rows = []
    for i, hop in enumerate(hops, 1):
        ms = {str(r["mode"]): measure(hop, hops, r) for r in runs}
        rows.append({"n": i, "kind": hop["kind"], "from": hop["from"], "to": hop["to"], "note": hop["note"],
                     "measures": ms})  # fmt: skip
    return rows


def legend() -> str:
    """The three arrow kinds and the three zones, as a small standalone SVG."""
    parts = []
    y = 22
    for kind, st in KINDS.items():
        parts.append(svg.el("line", x1=12, y1=y, x2=82, y2=y, stroke=st.colour, stroke_width=st.stroke,
                            stroke_dasharray=st.dash, stroke_linecap="round"))  # fmt: skip
        parts.append(_head(94, y, 1.0, 0.0, st.colour))
        parts.append(svg.text(106, y + 4.5, f"{kind}", font_size=13, font_weight=700, fill=st.colour))
        parts.append(svg.text(146, y + 4.5, f"{st.name}: {st.meaning}", font_size=12.5, fill="#1f2937"))
        y += 28
    return svg.document(560, y - 6, *parts, label="legend: DMA copy, CPU copy, page reference")
