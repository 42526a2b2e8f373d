"""Directory listing page (only with --list-dirs), in the manner of nginx's autoindex: a parent link, directories
first, each entry's last modification (UTC) and size in bytes; names HTML-escaped in text and percent-encoded in
links (pure)."""

from __future__ import annotations

import html
import time
from typing import NamedTuple

from zcopy.serve.target import quote


class Entry(NamedTuple):
    name: bytes  # raw, as the file system has it
    is_dir: bool
    size: int
    mtime: float  # seconds since the epoch


_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
    "th,td{padding:.15em .9em;text-align:left;white-space:nowrap}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "tr:nth-child(even){background:#f4f4f4}"
)


def _row(href: str, text: str, modified: str, size: str) -> str:
    return f'<tr><td><a href="{html.escape(href)}">{text}</a></td><td>{modified}</td><td class="n">{size}</td></tr>'


def render(url_path: bytes, entries: list[Entry]) -> bytes:
    """HTML for the directory at ``url_path`` (ends in "/"); a "../" row unless it is the root."""
    title = html.escape(url_path.decode("utf-8", "replace"))
    rows = [] if url_path == b"/" else [_row("../", "../", "", "-")]
    for e in sorted(entries, key=lambda e: (not e.is_dir, e.name)):
        slash = "/" if e.is_dir else ""
        modified = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.mtime))
        text = html.escape(e.name.decode("utf-8", "replace")) + slash
        rows.append(_row(quote(e.name).decode("ascii") + slash, text, modified, "-" if e.is_dir else str(e.size)))
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of {t}</title><style>{s}</style></head>\n'
        "<body><h1>Index of {t}</h1>\n<table>\n"
        "<thead><tr><th>Name</th><th>Last modified (UTC)</th><th>Size (bytes)</th></tr></thead>\n"
        "<tbody>\n{rows}\n</tbody></table></body></html>\n"
    ).format(t=title, s=_STYLE, rows="\n".join(rows))
    return page.encode("utf-8")
