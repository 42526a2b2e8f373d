"""The CJK glyphs the tour report quotes from the article, embedded so the page reads without a CJK font.

The report names the article's sections in Chinese (beside their English). A machine without a CJK font would
draw each of those characters as a box, so the page carries its own: a subset of Noto Sans CJK SC (SIL Open Font
License 1.1, Debian package fonts-noto-cjk) holding only the glyphs the page uses, as WOFF2 (a few kB), renamed
as the OFL asks of a modified font. It is committed (fonts/cjk-subset.woff2, its license beside it) and remade by

    python -m zcopy.lab.cjkfont NotoSansCJK-Regular.ttc   # needs fontTools and brotli (the dev extra)

whenever the texts below change; a test checks that the committed font covers every CJK character the page shows.
"""

from __future__ import annotations

import base64
import sys
import unicodedata
from pathlib import Path

FAMILY = "zcopy CJK subset"  # not the original's name: the OFL reserves it for unmodified fonts
FONT_FILE = Path(__file__).parent / "fonts" / "cjk-subset.woff2"
SOURCE_FACE = "Noto Sans CJK SC"  # the face taken from the collection


def is_cjk(ch: str) -> bool:
    """A character drawn from a CJK font: wide or full-width (ideographs, CJK punctuation)."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


def chars_used() -> str:
    """Every CJK character the report can show: the article's section titles and the steps' article texts."""
    from zcopy.lab import tour, tourpage

    texts = [*tourpage.ARTICLE_BASICS, *tourpage.ARTICLE_LAYERS, *tourpage.ARTICLE_PART]
    texts += [s for pair in tourpage.ARTICLE_SECTIONS.values() for s in pair]
    texts += [t.article for t in tour.STEP_TEXTS.values()]
    return "".join(sorted({ch for text in texts for ch in text if is_cjk(ch)}))


def unicode_range(chars: str) -> str:
    """CSS unicode-range listing exactly ``chars`` (so the face is used for nothing else)."""
    return ", ".join(f"U+{ord(ch):X}" for ch in sorted(set(chars)))


def font_face_css() -> str:
    """An @font-face rule with the committed subset inline (the page stays one folder that opens offline)."""
    data = base64.b64encode(FONT_FILE.read_bytes()).decode("ascii")
    return (
        f"@font-face {{ font-family: '{FAMILY}'; font-style: normal; font-weight: 400 700; font-display: block;\n"
        f"  src: url(data:font/woff2;base64,{data}) format('woff2');\n"
        f"  unicode-range: {unicode_range(chars_used())}; }}\n"
    )


def make_subset(collection: Path, out: Path, chars: str) -> int:  # pragma: no cover - a maintainer's tool
    """Write the WOFF2 subset of ``chars`` from the SC face of a Noto Sans CJK collection; returns its size."""
    from fontTools import subset
    from fontTools.ttLib import TTCollection

    faces = TTCollection(str(collection)).fonts
    font = next(f for f in faces if f["name"].getDebugName(1) == SOURCE_FACE)
    options = subset.Options()
    options.flavor = "woff2"
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14]  # keep the copyright, version and license records
    options.layout_features = []  # no GSUB/GPOS: the quoted titles need no shaping (halves the size)
    options.drop_tables += ["vhea", "vmtx", "VORG", "DSIG"]  # horizontal text only
    options.hinting = False
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    names = font["name"]
    for rec in names.names:
        if rec.nameID in (1, 4, 16):
            rec.string = FAMILY
        elif rec.nameID == 3:
            rec.string = f"{FAMILY};{names.getDebugName(5)}"
        elif rec.nameID == 6:
            rec.string = FAMILY.replace(" ", "")
    out.parent.mkdir(parents=True, exist_ok=True)
    font.flavor = "woff2"
    font.save(str(out))
    return out.stat().st_size


def main(argv: list[str]) -> int:  # pragma: no cover - a maintainer's tool
    if len(argv) != 1:
        print("usage: python -m zcopy.lab.cjkfont NotoSansCJK-Regular.ttc\n"
              "  (from the Debian package fonts-noto-cjk: apt-get download fonts-noto-cjk; dpkg-deb -x ...)",
              file=sys.stderr)  # fmt: skip
        return 2
    chars = chars_used()
    size = make_subset(Path(argv[0]), FONT_FILE, chars)
    print(f"{FONT_FILE}: {size} bytes, {len(chars)} glyphs: {chars}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
