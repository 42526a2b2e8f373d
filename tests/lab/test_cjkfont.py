"""The tour report reads without a CJK font: English titles first, the article's Chinese beside them, drawn from
a committed subset font that holds exactly the glyphs the page uses; checked in headless Chromium with a font
configuration that has no CJK font at all."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fontTools.ttLib import TTFont

from zcopy.lab import cjkfont, tourpage

TOUR_JSON = Path(__file__).parent / "data" / "tour.json"
FONTS = Path(cjkfont.__file__).parent / "fonts"


def report_files() -> dict[str, str]:
    doc: dict[str, Any] = json.loads(TOUR_JSON.read_text(encoding="utf-8"))
    return tourpage.build(doc)


def cjk_in(text: str) -> set[str]:
    return {ch for ch in text if cjkfont.is_cjk(ch)}


def test_the_subset_holds_exactly_the_glyphs_the_page_uses() -> None:
    font = TTFont(io.BytesIO(cjkfont.FONT_FILE.read_bytes()))  # WOFF2: fontTools reads it with brotli
    covered = {chr(cp) for cp in font.getBestCmap()}
    on_page = set().union(*(cjk_in(text) for text in report_files().values()))
    assert on_page and on_page <= covered  # every CJK character the page shows
    assert covered == set(cjkfont.chars_used())  # and nothing else
    assert cjkfont.FONT_FILE.stat().st_size < 12 * 1024  # a few kB
    names = font["name"]
    assert names.getDebugName(1) == cjkfont.FAMILY  # renamed, as the OFL asks of a Modified Version
    assert "Open Font License" in (names.getDebugName(13) or "") and "Adobe" in (names.getDebugName(0) or "")
    ofl = (FONTS / "OFL.txt").read_text()
    assert "SIL OPEN FONT LICENSE Version 1.1" in ofl and "Reserved Font Name 'Source'" in ofl


def test_the_font_travels_inline_and_covers_only_its_characters() -> None:
    css = report_files()["report.css"]
    data = re.search(r"url\(data:font/woff2;base64,([A-Za-z0-9+/=]+)\)", css)
    assert data is not None
    assert base64.b64decode(data.group(1)) == cjkfont.FONT_FILE.read_bytes()
    ranges = re.search(r"unicode-range: ([^;]+);", css)
    assert ranges is not None and {chr(int(u[2:], 16)) for u in ranges.group(1).split(", ")} == set(
        cjkfont.chars_used()
    )
    assert f"font-family: '{cjkfont.FAMILY}', " in css  # first in the page's stack: it covers only those


def test_english_titles_come_first_with_the_chinese_beside() -> None:
    page = report_files()["index.html"]
    for zh, en in tourpage.ARTICLE_SECTIONS.values():
        escaped = en.replace("'", "&#x27;")
        assert escaped in page and page.index(escaped) < page.index(zh), en
    card = page.split("class='card", 2)[1].split("</a>")[0]  # the first overview card (traditional)
    assert "1. Traditional I/O: reading and writing a file <span lang=zh-CN>1.传统IO文件读写</span>" in card


# ---------------------------------------------------------------- in a real browser, without CJK fonts

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--run-all-compositor-stages-before-draw",
                  "--virtual-time-budget=10000"]  # fmt: skip
# Appended to a copy of the page: records whether the browser loaded the embedded face and the text it shows.
PROBE = """<script>
document.fonts.ready.then(async () => {
  const faces = [...document.fonts].filter(f => f.family.replace(/["']/g, "") === "%s");
  await Promise.all(faces.map(f => f.load().catch(() => null)));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({faces: faces.map(f => f.status),
                                    covered: document.fonts.check("16px '%s'", "%s")});
  document.body.appendChild(out);
});
</script>"""


def fonts_without_cjk(tmp_path: Path) -> dict[str, str]:
    """A fontconfig set-up with this machine's fonts minus every font that has a CJK glyph."""
    listed = subprocess.run(["fc-list", ":", "file", "lang"], capture_output=True, text=True, timeout=60).stdout
    fontdir = tmp_path / "fonts"
    fontdir.mkdir()
    for line in listed.splitlines():
        path, _, langs = line.partition(": ")
        if path and not re.search(r"\b(zh|ja|ko)(-|\b)", langs):
            target = Path(path.rstrip(":"))
            link = fontdir / target.name
            if target.is_file() and not link.exists():
                link.symlink_to(target)
    conf = tmp_path / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n'
        f"<fontconfig><dir>{fontdir}</dir><cachedir>{tmp_path / 'fc-cache'}</cachedir></fontconfig>\n"
    )
    return {**os.environ, "FONTCONFIG_FILE": str(conf)}


def test_the_report_reads_in_chromium_without_a_cjk_font(tmp_path: Path) -> None:
    exe = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if exe is None or shutil.which("fc-list") is None:
        pytest.skip("no Chromium/fontconfig installed (apt-get install chromium; .ci/run installs it)")
    image = pytest.importorskip("PIL.Image", reason="the screenshot check reads the PNG with Pillow (dev extra)")
    env = fonts_without_cjk(tmp_path)
    sample = cjkfont.chars_used()
    # No font of this set-up has the glyphs (so any that show come from the page).
    for ch in sample[:3]:
        found = subprocess.run(["fc-list", f":charset={ord(ch):x}", "file"], env=env, capture_output=True,
                               text=True, timeout=60).stdout.strip()  # fmt: skip
        assert found == "", found
    out = tmp_path / "report"
    for name, text in report_files().items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    probe = out / "probe.html"
    page = (out / "index.html").read_text(encoding="utf-8")
    probe.write_text(page.replace("</body>", PROBE % (cjkfont.FAMILY, cjkfont.FAMILY, sample) + "</body>"))
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        run_env = {**env, "HOME": profile}
        common = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1600"]
        dom = subprocess.run([*common, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                             timeout=120, env=run_env)  # fmt: skip
        subprocess.run([*common, f"--screenshot={shot}", (out / "index.html").as_uri()], capture_output=True,
                       timeout=120, env=run_env)  # fmt: skip
    # The English titles are in the DOM the browser built, each before its Chinese.
    for zh, en in tourpage.ARTICLE_SECTIONS.values():
        assert en in dom.stdout and dom.stdout.index(en) < dom.stdout.index(zh), en
    found = re.search(r'<pre id="probe">([^<]*)</pre>', dom.stdout)
    assert found is not None, dom.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result == {"faces": ["loaded"], "covered": True}  # the embedded face loaded and has every glyph
    with image.open(shot) as img:
        assert img.size == (1280, 1600) and len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 100
