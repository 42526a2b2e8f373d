from __future__ import annotations

from zcopy.serve import mime


def test_mime_table() -> None:
    assert mime.content_type(b"a.HTML").startswith(b"text/html")
    assert mime.content_type(b"x.tar.gz") == b"application/gzip"
    assert mime.content_type(b"noext") == mime.DEFAULT
    assert mime.content_type(b".bashrc") == mime.DEFAULT
