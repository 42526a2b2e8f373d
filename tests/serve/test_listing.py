from __future__ import annotations

import calendar
import os
import re
from pathlib import Path

from zcopy.serve import listing
from zcopy.serve.listing import Entry
from zcopy.serve.resolve import Resolver

T = calendar.timegm((2026, 12, 7, 4, 50, 59, 0, 0, 0))


def test_listing_escapes_names_and_links() -> None:
    page = listing.render(
        b"/d/<x>/", [Entry(b'a"<b>&.txt', False, 5, T), Entry(b"sub dir", True, 4096, T), Entry(b"\xff", False, 0, T)]
    )
    assert b"<b>" not in page and b"&lt;b&gt;&amp;.txt" in page
    assert b'href="a%22%3Cb%3E&amp;.txt"' in page
    assert b'href="sub%20dir/"' in page
    assert b"Index of /d/&lt;x&gt;/" in page


def test_listing_like_autoindex_parent_dirs_first_dates_sizes() -> None:
    entries = [Entry(b"b.txt", False, 1234567, T), Entry(b"z", True, 4096, T), Entry(b"a.txt", False, 0, 0.0)]
    page = listing.render(b"/d/", entries).decode()
    names = re.findall(r'<a href="([^"]*)">', page)
    assert names == ["../", "z/", "a.txt", "b.txt"]  # parent first, then directories, then files by name
    assert '<a href="b.txt">b.txt</a></td><td>2026-12-07 04:50</td><td class="n">1234567</td>' in page
    assert '<a href="z/">z/</a></td><td>2026-12-07 04:50</td><td class="n">-</td>' in page
    assert "<td>1970-01-01 00:00</td>" in page
    root = listing.render(b"/", entries).decode()
    assert 'href="../"' not in root  # nothing above the root


def test_resolver_lists_sizes_dates_and_links_as_their_targets(tmp_path: Path) -> None:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "f.txt").write_bytes(b"12345")
    os.utime(root / "f.txt", (T, T))
    (root / "to-sub").symlink_to("sub")
    (root / "dangling").symlink_to("nowhere")
    (root / ".hidden").write_bytes(b"x")
    for follow, to_sub_is_dir in ((True, True), (False, False)):
        resolver = Resolver(root, follow_symlinks=follow)
        opened = resolver.open([])
        assert opened is not None and opened.is_dir
        try:
            entries = {e.name: e for e in resolver.list_dir(opened.fd)}
        finally:
            os.close(opened.fd)
        assert set(entries) == {b"sub", b"f.txt", b"to-sub", b"dangling"}  # no dotfiles
        assert entries[b"f.txt"] == Entry(b"f.txt", False, 5, T)
        assert entries[b"sub"].is_dir and entries[b"to-sub"].is_dir is to_sub_is_dir
        assert not entries[b"dangling"].is_dir  # listed as the link itself
