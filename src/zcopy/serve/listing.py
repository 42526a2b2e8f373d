"""Directory listing page (only with --list-dirs): names HTML-escaped in text and percent-encoded in links (pure)."""

from __future__ import annotations

import html

from zcopy.serve.target import quote


def render(url_path: bytes, entries: list[tuple[bytes, bool]]) -> bytes:
    """HTML for one directory; ``entries`` are (name, is_dir) with names as raw bytes from the file system."""
    title = html.escape(url_path.decode("utf-8", "replace"))
    rows = []
    for name, is_dir in sorted(entries):
        href = quote(name).decode("ascii") + ("/" if is_dir else "")
        text = html.escape(name.decode("utf-8", "replace")) + ("/" if is_dir else "")
        rows.append(f'<li><a href="{html.escape(href)}">{text}</a></li>')
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of {t}</title></head>\n'
        "<body><h1>Index of {t}</h1><ul>\n{rows}\n</ul></body></html>\n"
    ).format(t=title, rows="\n".join(rows))
    return page.encode("utf-8")
