from __future__ import annotations

from zcopy.serve import head


def test_build_head_framing_and_connection() -> None:
    h = head.build(404, b"DATE", [(b"Content-Length", b"0")], keep_alive=True, http10=False)
    assert h == b"HTTP/1.1 404 Not Found\r\nServer: zcopy\r\nDate: DATE\r\nContent-Length: 0\r\n\r\n"
    assert b"Connection: close\r\n" in head.build(200, b"D", [], keep_alive=False, http10=False)
    assert b"Connection: keep-alive\r\n" in head.build(200, b"D", [], keep_alive=True, http10=True)
