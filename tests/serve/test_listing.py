from __future__ import annotations

from zcopy.serve import listing


def test_listing_escapes_names_and_links() -> None:
    page = listing.render(b"/d/<x>/", [(b'a"<b>&.txt', False), (b"sub dir", True), (b"\xff", False)])
    assert b"<b>" not in page and b"&lt;b&gt;&amp;.txt" in page
    assert b'href="a%22%3Cb%3E&amp;.txt"' in page
    assert b'href="sub%20dir/"' in page
    assert b"Index of /d/&lt;x&gt;/" in page
