"""A very small SVG writer for the tour report: elements as escaped strings, and text measured well enough to wrap.

Hand-written because the report needs rectangles, lines, polygons and text only; a library would add a
dependency for less than this module. Pure: strings in, strings out.
"""

from __future__ import annotations

import html

# Average advance of a proportional sans-serif glyph as a share of the font size (Latin text, measured by eye
# against DejaVu Sans and Noto Sans: 0.55-0.6); CJK glyphs are square, a full em wide.
LATIN_EM = 0.58
CJK_EM = 1.0

FONT = (
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'DejaVu Sans', "
    "'Noto Sans CJK SC', 'WenQuanYi Micro Hei', 'PingFang SC', 'Microsoft YaHei', sans-serif"
)


def _attr_name(key: str) -> str:
    # Python names cannot hold '-': font_size → font-size; a trailing '_' frees reserved words (class_).
    return key.rstrip("_").replace("_", "-")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}".removesuffix(".0")
    return str(value)


def el(tag: str, *children: str, **attrs: object) -> str:
    """<tag a="1">children</tag>; attributes whose value is None are left out."""
    parts = [tag] + [
        f'{_attr_name(k)}="{html.escape(_fmt(v), quote=True)}"' for k, v in attrs.items() if v is not None
    ]
    if not children:
        return f"<{' '.join(parts)}/>"
    return f"<{' '.join(parts)}>{''.join(children)}</{tag}>"


def text(x: float, y: float, content: str, **attrs: object) -> str:
    """A <text> element; the content is escaped."""
    return el("text", html.escape(content, quote=False), x=x, y=y, **attrs)


def width(s: str, size: float) -> float:
    """Approximate rendered width of s at this font size, in px."""
    return sum(CJK_EM if ord(ch) >= 0x2E80 else LATIN_EM for ch in s) * size


def wrap(s: str, max_px: float, size: float) -> list[str]:
    """Split s at spaces into lines no wider than max_px (a single long word keeps its own line)."""
    lines: list[str] = []
    line = ""
    for word in s.split():
        candidate = f"{line} {word}" if line else word
        if line and width(candidate, size) > max_px:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def document(w: float, h: float, *body: str, label: str) -> str:
    """A standalone SVG (also valid inline in HTML): viewBox-scaled, titled for screen readers."""
    return el(
        "svg", el("title", html.escape(label, quote=False)), *body,
        xmlns="http://www.w3.org/2000/svg", viewBox=f"0 0 {_fmt(float(w))} {_fmt(float(h))}",
        width=_fmt(float(w)), height=_fmt(float(h)), role="img", font_family=FONT,
    )  # fmt: skip
