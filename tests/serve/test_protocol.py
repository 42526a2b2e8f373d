"""HTTP/1.1 semantics against a real server (asyncio and uvloop): framing, methods, ranges, conditionals."""

from __future__ import annotations

import http.client
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Running, read_until_close, recv_response

DATA = bytes(range(256)) * 4096

Serve = Callable[..., Running]


def get(r: Running, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> http.client.HTTPResponse:
    c = http.client.HTTPConnection(*r.addr, timeout=5)
    c.request(method, path, headers=headers or {})
    resp = c.getresponse()
    resp.read()
    c.close()
    return resp


def raw(r: Running, data: bytes) -> bytes:
    s = r.connect()
    s.sendall(data)
    out = read_until_close(s)
    s.close()
    return out


def test_get_head_and_standard_headers(serve: Serve) -> None:
    r = serve()
    c = http.client.HTTPConnection(*r.addr, timeout=5)
    c.request("GET", "/hello.txt")
    resp = c.getresponse()
    assert resp.status == 200 and resp.read() == b"hello world\n"
    for h in ("Date", "Server", "ETag", "Last-Modified"):
        assert resp.getheader(h)
    assert resp.getheader("Accept-Ranges") == "bytes"
    assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert resp.getheader("Content-Length") == "12"
    c.request("HEAD", "/hello.txt")  # same connection: keep-alive
    head = c.getresponse()
    assert head.status == 200 and head.read() == b""
    assert head.getheader("Content-Length") == "12" and head.getheader("ETag") == resp.getheader("ETag")
    c.close()


def test_big_file_body_exact(serve: Serve) -> None:
    r = serve()
    resp = http.client.HTTPConnection(*r.addr, timeout=5)
    resp.request("GET", "/data.bin")
    got = resp.getresponse()
    assert got.read() == DATA


def test_empty_file(serve: Serve) -> None:
    r = serve()
    s = r.connect()
    s.sendall(b"GET /empty.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    st, h, body, rest = recv_response(s)
    assert st.endswith(b"200 OK") and h[b"content-length"] == b"0" and body == b""
    st, h, body, _ = _from_buffer(s, rest)
    assert body == b"hello world\n"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"])
def test_other_methods_405_with_allow(serve: Serve, method: str) -> None:
    resp = get(serve(), "/hello.txt", method=method)
    assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD"


def test_pipelined_requests_answered_in_order(serve: Serve) -> None:
    r = serve()
    s = r.connect()
    paths = [b"/hello.txt", b"/nope", b"/docs/", b"/hello.txt", b"/docs"]
    s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in paths))
    statuses = []
    rest = b""
    for _ in paths:
        st, _h, _body, rest = _from_buffer(s, rest)
        statuses.append(int(st.split()[1]))
    assert statuses == [200, 404, 200, 200, 301]


def _from_buffer(s: socket.socket, rest: bytes) -> tuple[bytes, dict[bytes, bytes], bytes, bytes]:
    class Buffered:
        def __init__(self) -> None:
            self.buf = rest

        def recv(self, n: int) -> bytes:
            if self.buf:
                b, self.buf = self.buf, b""
                return b
            return s.recv(n)

    return recv_response(Buffered())  # type: ignore[arg-type]


def test_byte_at_a_time_request(serve: Serve) -> None:
    r = serve()
    s = r.connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for b in b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-4\r\n\r\n":
        s.send(bytes([b]))
        time.sleep(0.001)
    st, _h, body, _ = recv_response(s)
    assert st.endswith(b"206 Partial Content") and body == b"hello"


def test_many_pipelined_with_small_client_buffer(serve: Serve) -> None:
    """More requests than the pipeline cap, while the client reads slowly: all answered, in order."""
    r = serve()
    s = r.connect()
    n = 100
    s.sendall(
        b"".join(b"GET /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=%d-%d\r\n\r\n" % (i, i + 9) for i in range(n))
    )
    want = b"".join(b"%s" % DATA[i : i + 10] for i in range(n))
    got = b""
    rest = b""
    for _ in range(n):
        _st, _h, body, rest = _from_buffer(s, rest)
        got += body
    assert got == want


def test_connection_close_honoured(serve: Serve) -> None:
    out = raw(
        serve(),
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert out.count(b"HTTP/1.1 200") == 1 and b"Connection: close" in out


def test_http10_closes_unless_keep_alive(serve: Serve) -> None:
    r = serve()
    out = raw(r, b"GET /hello.txt HTTP/1.0\r\n\r\n")  # no Host needed in 1.0
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello world\n")
    s = r.connect()
    s.sendall(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    _st, h, _body, _ = recv_response(s)
    assert h[b"connection"] == b"keep-alive"
    s.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
    assert read_until_close(s).endswith(b"hello world\n")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\n\r\n",  # no Host
        b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # two Hosts
        b"GET /hello.txt HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_bad_requests_get_400_and_close(serve: Serve, request_bytes: bytes) -> None:
    out = raw(serve(), request_bytes + b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out[:80]
    assert out.count(b"HTTP/1.1") == 1  # closed after the 400: the pipelined request is not answered


def test_absolute_form_target(serve: Serve) -> None:
    out = raw(serve(), b"GET http://example.com/hello.txt HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello world\n")


def test_header_section_limit_431(serve: Serve) -> None:
    r = serve(max_header_bytes=4096)
    big = b"X-Pad: " + b"a" * 5000 + b"\r\n"
    out = raw(r, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431")
    many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 50) for i in range(200))
    assert raw(r, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431")


def test_unterminated_header_line_is_cut_off(serve: Serve) -> None:
    """A header line that never ends: 431 once max_header_bytes + one read buffer arrived, then the close."""
    r = serve(max_header_bytes=4096)
    s = r.connect()
    s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    try:
        for _ in range(10):
            s.sendall(b"a" * 16384)
            time.sleep(0.01)
    except (BrokenPipeError, ConnectionResetError):
        pass
    t0 = time.monotonic()
    assert read_until_close(s).startswith(b"HTTP/1.1 431")
    assert time.monotonic() - t0 < 4.0  # lingering close is bounded
    s.close()


def test_long_url_414(serve: Serve) -> None:
    out = raw(serve(), b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414")


def test_percent_encoded_names(serve: Serve) -> None:
    assert get(serve(), "/sp%20ace.txt").status == 200


def test_directory_redirect_index_and_listing(serve: Serve) -> None:
    r = serve()
    resp = get(r, "/docs?x=1")
    assert resp.status == 301 and resp.getheader("Location") == "/docs/?x=1"
    assert get(r, "/docs/").status == 200
    assert get(r, "/hello.txt/").status == 404
    c = http.client.HTTPConnection(*r.addr, timeout=5)
    c.request("GET", "/nodir/")  # listing off by default: nginx's 403, saying how to turn it on
    resp = c.getresponse()
    assert resp.status == 403 and b"--list-dirs" in resp.read()
    r2 = serve(list_dirs=True)
    c = http.client.HTTPConnection(*r2.addr, timeout=5)
    c.request("GET", "/nodir/")
    resp = c.getresponse()
    page = resp.read()
    assert resp.status == 200 and b"a &lt;b&gt;&amp;.txt" in page and b".secret" not in page
    assert b'<a href="../">../</a>' in page  # the parent link
    assert re.search(rb"a%20%3Cb%3E&amp;.txt\">a &lt;b&gt;&amp;.txt</a></td><td>\d{4}-\d\d-\d\d \d\d:\d\d</td>"
                     rb'<td class="n">1</td>', page)  # fmt: skip
    c.request("GET", "/")
    root_page = c.getresponse().read()
    assert b".secret" not in root_page and b'href="../"' not in root_page and b'href="nodir/"' in root_page


def test_dotfiles(serve: Serve) -> None:
    assert get(serve(), "/.secret").status == 404
    assert get(serve(dotfiles=True), "/.secret").status == 200


def test_single_suffix_open_ranges(serve: Serve) -> None:
    r = serve()
    for rng, want in [("bytes=10-19", DATA[10:20]), ("bytes=-500", DATA[-500:]), ("bytes=1048000-", DATA[1048000:])]:
        c = http.client.HTTPConnection(*r.addr, timeout=5)
        c.request("GET", "/data.bin", headers={"Range": rng})
        resp = c.getresponse()
        body = resp.read()
        assert resp.status == 206 and body == want
        start = len(DATA) - len(want) if rng.startswith("bytes=-") or rng.endswith("-") else 10
        assert resp.getheader("Content-Range") == f"bytes {start}-{start + len(want) - 1}/{len(DATA)}"


def test_multipart_byteranges(serve: Serve) -> None:
    r = serve()
    c = http.client.HTTPConnection(*r.addr, timeout=5)
    c.request("GET", "/data.bin", headers={"Range": "bytes=0-9, 100-109, 5-12"})
    resp = c.getresponse()
    body = resp.read()
    assert resp.status == 206
    ctype = resp.getheader("Content-Type")
    assert ctype.startswith("multipart/byteranges; boundary=")
    boundary = ctype.split("boundary=")[1].encode()
    assert int(resp.getheader("Content-Length")) == len(body)
    parts = body.split(b"\r\n--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    got = []
    for p in parts[1:-1]:
        head, _, data = p[2:].partition(b"\r\n\r\n")
        assert b"Content-Type: application/octet-stream" in head
        got.append((head.split(b"Content-Range: ")[1], data))
    assert got == [(b"bytes 0-12/1048576", DATA[0:13]), (b"bytes 100-109/1048576", DATA[100:110])]


def test_unsatisfiable_416_and_invalid_ignored(serve: Serve) -> None:
    r = serve()
    resp = get(r, "/hello.txt", {"Range": "bytes=100-200"})
    assert resp.status == 416 and resp.getheader("Content-Range") == "bytes */12"
    assert get(r, "/hello.txt", {"Range": "bytes=5-1"}).status == 200
    assert get(r, "/hello.txt", {"Range": "pages=1-2"}).status == 200
    many = "bytes=" + ",".join(f"{i}-{i}" for i in range(101))
    assert get(r, "/data.bin", {"Range": many}).status == 200


def test_conditionals(serve: Serve) -> None:
    r = serve()
    first = get(r, "/hello.txt")
    etag, lm = first.getheader("ETag"), first.getheader("Last-Modified")
    nm = get(r, "/hello.txt", {"If-None-Match": f'"x", {etag}'})
    assert nm.status == 304 and nm.getheader("ETag") == etag and nm.getheader("Last-Modified") == lm
    assert nm.getheader("Content-Length") is None
    assert get(r, "/hello.txt", {"If-None-Match": "*"}).status == 304
    assert get(r, "/hello.txt", {"If-Modified-Since": lm}).status == 304
    assert get(r, "/hello.txt", {"If-None-Match": '"x"', "If-Modified-Since": lm}).status == 200
    assert get(r, "/hello.txt", {"If-Match": '"x"'}).status == 412
    assert get(r, "/hello.txt", {"If-Match": etag}).status == 200
    assert get(r, "/hello.txt", {"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}).status == 412
    assert get(r, "/hello.txt", {"Range": "bytes=0-1", "If-Range": etag}).status == 206
    assert get(r, "/hello.txt", {"Range": "bytes=0-1", "If-Range": lm}).status == 206
    assert get(r, "/hello.txt", {"Range": "bytes=0-1", "If-Range": '"old"'}).status == 200
    assert get(r, "/hello.txt", {"Range": "bytes=0-1", "If-Range": "W/" + etag}).status == 200


def test_precompressed_variants(serve: Serve, site: Path) -> None:
    (site / "app.js").write_bytes(b"plain")
    (site / "app.js.gz").write_bytes(b"GZ")
    (site / "app.js.br").write_bytes(b"BR")
    r = serve()
    c = http.client.HTTPConnection(*r.addr, timeout=5)
    for ae, body, enc in [
        ("br, gzip", b"BR", "br"),
        ("gzip", b"GZ", "gzip"),
        ("br;q=0, gzip", b"GZ", "gzip"),
        ("", b"plain", None),
        ("identity", b"plain", None),
        ("*", b"BR", "br"),
    ]:
        c.request("GET", "/app.js", headers={"Accept-Encoding": ae})
        resp = c.getresponse()
        assert resp.read() == body, ae
        assert resp.getheader("Content-Encoding") == enc
        assert resp.getheader("Vary") == "Accept-Encoding"
        assert resp.getheader("Content-Type").startswith("text/javascript")
    assert get(r, "/hello.txt").getheader("Vary") is None


def test_precompressed_symlink_out_of_root_ignored(serve: Serve, site: Path) -> None:
    (site.parent / "evil.gz").write_bytes(b"SECRET")
    (site / "page.html").write_bytes(b"ok")
    os.symlink(site.parent / "evil.gz", site / "page.html.gz")
    c = http.client.HTTPConnection(*serve().addr, timeout=5)
    c.request("GET", "/page.html", headers={"Accept-Encoding": "gzip"})
    resp = c.getresponse()
    assert resp.read() == b"ok" and resp.getheader("Content-Encoding") is None


def test_request_body_is_skipped(serve: Serve) -> None:
    r = serve()
    s = r.connect()
    s.sendall(
        b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    st, _, _, rest = recv_response(s)
    assert b"405" in st
    st, _, body, _ = _from_buffer(s, rest)
    assert body == b"hello world\n"


def test_smuggling_shapes_rejected(serve: Serve) -> None:
    r = serve()
    te_cl = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"
    assert raw(r, te_cl).startswith(b"HTTP/1.1 400")
    bad_te = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
    assert raw(r, bad_te).startswith(b"HTTP/1.1 400")


def test_chunked_request_body_skipped_then_next_request(serve: Serve) -> None:
    out = raw(
        serve(),
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert out.count(b"HTTP/1.1 200 OK") == 2 and out.count(b"hello world\n") == 2


def test_upgrade_is_answered_then_closed(serve: Serve) -> None:
    out = raw(serve(), b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and b"Connection: close" in out and out.endswith(b"hello world\n")


def test_head_of_ranges_and_errors_has_no_body(serve: Serve) -> None:
    r = serve()
    s = r.connect()
    s.sendall(
        b"HEAD /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,5-6\r\n\r\n"
        b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = read_until_close(s)
    heads = out.split(b"\r\n\r\n")
    assert heads[0].startswith(b"HTTP/1.1 206") and heads[1].startswith(b"HTTP/1.1 404")
    assert heads[2].startswith(b"HTTP/1.1 200") and heads[3] == b"hello world\n"


def test_partial_writes_to_a_slow_small_buffer_reader(serve: Serve) -> None:
    """Pipelined multi-range and full responses into a 4 KiB receive buffer read in dribbles: exact bytes, in order."""
    r = serve(max_chunk=64 << 10)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(r.addr)
    s.settimeout(10)
    reqs = [
        b"GET /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99999,500000-599999\r\n\r\n",
        b"GET /data.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ]
    s.sendall(b"".join(reqs))
    out = b""
    while True:
        chunk = s.recv(1500)
        if not chunk:
            break
        out += chunk
        if len(out) < 200_000:
            time.sleep(0.0005)  # dribble at first: the server sees EAGAIN and partial sends many times
    assert out.count(b"HTTP/1.1 206") == 1 and out.count(b"HTTP/1.1 200") == 2
    assert DATA[0:100000] in out and DATA[500000:600000] in out
    assert out.endswith(b"hello world\n")
    first_200 = out.index(b"HTTP/1.1 200")
    body = out[out.index(b"\r\n\r\n", first_200) + 4 :][: len(DATA)]
    assert body == DATA


def test_large_request_body_is_413_and_close(serve: Serve) -> None:
    r = serve()
    s = r.connect()
    s.sendall(b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    try:
        for _ in range(40):
            s.sendall(b"z" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert read_until_close(s).startswith(b"HTTP/1.1 413 Content Too Large")
