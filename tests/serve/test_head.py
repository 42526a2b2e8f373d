from __future__ import annotations

from zcopy.serve import head, listing, mime


def test_build_head_framing_and_connection() -> None:
    h = head.build(404, b"DATE", [(b"Content-Length", b"0")], keep_alive=True, http10=False)
    assert h == b"HTTP/1.1 404 Not Found\r\nServer: zcopy\r\nDate: DATE\r\nContent-Length: 0\r\n\r\n"
    assert b"Connection: close\r\n" in head.build(200, b"D", [], keep_alive=False, http10=False)
    assert b"Connection: keep-alive\r\n" in head.build(200, b"D", [], keep_alive=True, http10=True)


def test_mime_table() -> None:
    assert mime.content_type(b"a.HTML").startswith(b"text/html")
    assert mime.content_type(b"x.tar.gz") == b"application/gzip"
    assert mime.content_type(b"noext") == mime.DEFAULT
    assert mime.content_type(b".bashrc") == mime.DEFAULT


def test_listing_escapes_names_and_links() -> None:
    page = listing.render(b"/d/<x>/", [(b'a"<b>&.txt', False), (b"sub dir", True), (b"\xff", False)])
    assert b"<b>" not in page and b"&lt;b&gt;&amp;.txt" in page
    assert b'href="a%22%3Cb%3E&amp;.txt"' in page
    assert b'href="sub%20dir/"' in page
    assert b"Index of /d/&lt;x&gt;/" in page


def test_access_log_escapes_hostile_targets(tmp_path: object) -> None:
    import pathlib

    from zcopy.serve.accesslog import AccessLog

    path = pathlib.Path(str(tmp_path)) / "log"
    log = AccessLog(str(path))
    log.write("1.2.3.4", b"GET", b'/a"\x1b[31m\n127.0.0.1 forged', b"1.1", 404, 0, "none")
    log.close()
    text = path.read_text()
    assert text.count("\n") == 1 and "\x1b" not in text and '\\"' in text
    assert text.startswith("1.2.3.4 - - [") and text.rstrip().endswith('" 404 -')
