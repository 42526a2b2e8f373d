"""The ASGI HTTP bridge against a real Starlette app in a `zcopy serve --app` subprocess: scope, bodies both ways,
100-continue, pipelining, disconnects, the error rules, zero-copy file responses (pathsend, zerocopysend)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx

from .conftest import DATA_BIN, AppServer, read_until_close, recv_head, response


def get(server: AppServer, path: str, **kw: object) -> httpx.Response:
    return httpx.get(server.url + path, timeout=10, **kw)  # type: ignore[arg-type]


# -- scope ---------------------------------------------------------------------------------------------------
def test_scope_fields(server: AppServer) -> None:
    with server.connect() as s:
        s.sendall(
            b"GET /scope/../scope?a=1&b=%20x HTTP/1.1\r\nHost: example.test\r\nX-Dup: one\r\n"
            b"x-dup: two\r\nUser-Agent: raw\r\n\r\n"
        )
        status, _, body, _ = response(s)
    assert status == 404  # Starlette matched "/scope/../scope" literally: paths are never normalised by us
    with server.connect() as s:
        s.sendall(b"GET /sc%6fpe?a=1&b=%20x HTTP/1.1\r\nHost: example.test\r\nX-Dup: one\r\nx-dup: two\r\n\r\n")
        status, _, body, _ = response(s)
        local = s.getsockname()
    assert status == 200
    sc = json.loads(body)
    assert sc["type"] == "http"
    assert sc["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert sc["http_version"] == "1.1" and sc["method"] == "GET" and sc["scheme"] == "http"
    assert sc["path"] == "/scope" and sc["raw_path"] == "/sc%6fpe"  # decoded once; raw kept as sent
    assert sc["query_string"] == "a=1&b=%20x" and sc["root_path"] == ""
    # Names lower-cased, order and duplicates kept.
    assert sc["headers"] == [["host", "example.test"], ["x-dup", "one"], ["x-dup", "two"]]
    assert sc["client"] == [local[0], local[1]]
    assert sc["server"] == [server.addr[0], server.addr[1]]
    assert sc["state"] == {"greeting": "hello from lifespan"}
    assert sc["extensions"] == ["http.response.pathsend", "http.response.zerocopysend"]


def test_scope_utf8_path_http10_and_absolute_form(server: AppServer) -> None:
    with server.connect() as s:
        s.sendall(b"GET http://example.test/scope?q HTTP/1.0\r\n\r\n")
        status, headers, body, _ = response(s)
    sc = json.loads(body)
    assert status == 200 and sc["http_version"] == "1.0" and sc["path"] == "/scope" and sc["query_string"] == "q"
    assert headers.get("connection") == "close"  # HTTP/1.0 without keep-alive
    r = get(server, "/state")
    assert r.text == "hello from lifespan"
    with server.connect() as s:
        s.sendall(b"GET /file/caf%C3%A9.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _, _ = response(s)
    assert status == 500  # Starlette's FileResponse of a missing file raises: the path was decoded as UTF-8


def test_malformed_requests_400_and_close(server: AppServer) -> None:
    for bad in (b"GET / HTTP/1.1\r\n\r\n", b"BLAH\r\n\r\n", b"GET /scope HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"):
        with server.connect() as s:
            s.sendall(bad)
            out = read_until_close(s)
        assert out.startswith(b"HTTP/1.1 400 "), (bad, out[:80])
        assert b"connection: close" in out.lower()


# -- request bodies --------------------------------------------------------------------------------------------
def test_body_content_length_and_chunked(server: AppServer) -> None:
    payload = bytes(range(256)) * 1000
    assert httpx.post(server.url + "/echo", content=payload, timeout=10).content == payload

    def gen():  # type: ignore[no-untyped-def]
        for i in range(50):
            yield bytes([i]) * 3001

    r = httpx.post(server.url + "/echo", content=gen(), timeout=10)  # httpx sends a generator chunked
    assert r.content == b"".join(bytes([i]) * 3001 for i in range(50))
    with server.connect() as s:
        s.sendall(b"POST /raw/body-messages HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        _status, _, body, _ = response(s)
    assert body == b"0:0"  # one http.request, empty, more_body False


def test_body_streams_in_several_messages(server: AppServer) -> None:
    with server.connect() as s:
        s.sendall(b"POST /raw/body-messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"5\r\nhello\r\n")
        time.sleep(0.2)  # not a timing assertion: only makes a second message likely; the total is what we check
        s.sendall(b"6\r\n world\r\n0\r\n\r\n")
        _status, _, body, _ = response(s)
    msgs = [m.split(":") for m in body.decode().split(",")]
    assert sum(int(n) for n, _ in msgs) == 11
    assert msgs[-1][1] == "0" and all(more == "1" for _, more in msgs[:-1])


def test_100_continue_only_when_the_app_reads(server: AppServer) -> None:
    with server.connect() as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        status, _, rest = recv_head(s)
        assert status == 100 and rest == b""
        s.sendall(b"abcde")
        status, _, body, _ = response(s, rest)
        assert status == 200 and body == b"abcde"
    with server.connect() as s:
        # The app answers without reading: no 100, and the connection closes (the body was never sent).
        s.sendall(b"POST /raw/respond-early HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        status, headers, body, _ = response(s)
        assert status == 413 and body == b"no thanks" and headers["connection"] == "close"


def test_slow_app_upload_pauses_reading(server: AppServer) -> None:
    """A 200 MiB upload to an app that stops reading: the server stops reading too (memory stays bounded)."""
    total = 200 << 20
    block = b"u" * (1 << 20)
    with server.connect() as s:
        s.sendall(b"POST /raw/slow-upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        s.settimeout(1.0)
        sent = 0
        try:
            while sent < total:
                sent += s.send(block)
        except TimeoutError:
            pass  # the server stopped reading: our send buffer and its receive buffer are full
        assert sent < total // 4, sent  # only kernel socket buffers hold the rest, not the server
        status_text = Path(f"/proc/{server.pid}/status").read_text()
        rss_kib = int(next(ln for ln in status_text.splitlines() if ln.startswith("VmRSS")).split()[1])
        assert rss_kib < 120 << 10, rss_kib
        got = int(get(server, "/raw/received").text)
        assert got <= 1 << 18  # the app took one message (≤ high-water mark + one read)
        assert get(server, "/raw/release").status_code == 200
        s.settimeout(10)
        while sent < total:
            sent += s.send(block[: min(len(block), total - sent)])
        status, _, body, _ = response(s)
    assert status == 200 and int(body) == total


# -- responses ---------------------------------------------------------------------------------------------
def test_keepalive_pipelining_in_order_and_head(server: AppServer) -> None:
    reqs = (
        b"GET /state HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"HEAD /file/small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /raw/sleep?0.05 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /file/small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with server.connect() as s:
        s.sendall(reqs)
        st, _, body, rest = response(s)
        assert (st, body) == (200, b"hello from lifespan")
        st, _, body, rest = response(s, rest)
        assert (st, body) == (200, b"abc")
        st, h, body, rest = response(s, rest, head_only=True)
        assert st == 200 and h["content-length"] == "12" and body == b""
        st, h, body, rest = response(s, rest)
        assert h["transfer-encoding"] == "chunked" and body == b"".join(b"chunk%d\n" % i for i in range(5))
        st, _, body, rest = response(s, rest)
        assert body == b"slept"
        st, h, body, rest = response(s, rest)
        assert body == b"hello world\n" and h["connection"] == "close"
        assert rest + read_until_close(s) == b""  # nothing after the HEAD's headers leaked; closed after "close"


def test_file_response_bytes_and_content_length(server: AppServer) -> None:
    r = get(server, "/file/data.bin")
    assert r.status_code == 200 and r.content == DATA_BIN and r.headers["content-length"] == str(len(DATA_BIN))
    r = get(server, "/file/empty.bin")
    assert r.status_code == 200 and r.content == b""
    r = get(server, "/raw/pathsend?small.txt")  # no Content-Length from the app: we add it from fstat
    assert r.content == b"hello world\n" and r.headers["content-length"] == "12"
    r = get(server, "/file/data.bin", headers={"Range": "bytes=100-199"})  # Starlette streams ranges itself
    assert r.status_code == 206 and r.content == DATA_BIN[100:200]


def test_file_response_route_is_sendfile_in_the_access_log(data_dir: Path, tmp_path: Path) -> None:
    # The bytes alone would be the same if pathsend were ignored and the file streamed through the app.
    log = tmp_path / "access.jsonl"
    s = AppServer("tests.serve.asgi.apps:app", data_dir, "--access-log-file", str(log), "--json-log")
    try:
        for path, headers in (("/file/data.bin", {}), ("/raw/pathsend?small.txt", {}),
                              ("/file/data.bin", {"Range": "bytes=100-199"})):
            assert get(s, path, headers=headers).status_code in (200, 206)
        deadline = time.monotonic() + 10
        while len(log.read_text().splitlines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = [json.loads(line) for line in log.read_text().splitlines()]
    finally:
        assert s.stop()[0] == 0
    routes = {(x["target"], x["status"]): x["route"] for x in lines}
    assert routes[("/file/data.bin", 200)] == "sendfile" and routes[("/raw/pathsend?small.txt", 200)] == "sendfile"
    assert routes[("/file/data.bin", 206)] != "sendfile"  # Starlette streams ranges through the app: not pathsend


def test_zerocopysend_offsets_positions_and_mixing(server: AppServer) -> None:
    r = get(server, "/raw/zerocopy")
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.content == b"<" + DATA_BIN[10:30] + b"|" + DATA_BIN[1000:1100] + DATA_BIN[1100:1105] + b">"


# -- errors ------------------------------------------------------------------------------------------------
def test_exception_before_start_is_500_and_connection_stays(server: AppServer) -> None:
    with server.connect() as s:
        s.sendall(b"GET /raw/boom-before HTTP/1.1\r\nHost: x\r\n\r\nGET /state HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, body, rest = response(s)
        assert st == 500 and "connection" not in h
        st, _, body, _ = response(s, rest)
        assert (st, body) == (200, b"hello from lifespan")
    with server.connect() as s:
        s.sendall(b"GET /raw/noreply HTTP/1.1\r\nHost: x\r\n\r\nGET /state HTTP/1.1\r\nHost: x\r\n\r\n")
        st, _, _, rest = response(s)
        assert st == 500
        assert response(s, rest)[0] == 200


def test_broken_responses_close_the_connection(server: AppServer) -> None:
    for path, expect_body in ((b"/raw/boom-after", b"x" * 10), (b"/raw/short", b"12345")):
        with server.connect() as s:
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\nGET /state HTTP/1.1\r\nHost: x\r\n\r\n")
            st, _, rest = recv_head(s)
            out = rest + read_until_close(s)
        assert st == 200, path
        assert out == expect_body, (path, out)  # never reused: the pipelined /state is not answered


def test_errors_found_before_the_head_left_are_a_500(server: AppServer) -> None:
    # Content-Length 3 and 5 body bytes: refused before anything was written, so a 500 still fits.
    with server.connect() as s:
        s.sendall(b"GET /raw/long HTTP/1.1\r\nHost: x\r\n\r\nGET /state HTTP/1.1\r\nHost: x\r\n\r\n")
        st, _, _, rest = response(s)
        assert st == 500
        assert response(s, rest)[:3:2] == (200, b"hello from lifespan")


def test_header_injection_is_refused(server: AppServer) -> None:
    with server.connect() as s:
        s.sendall(b"GET /raw/bad-header HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, _, _ = response(s)
    assert st == 500 and "injected" not in h


def test_disconnect_delivered_while_streaming(server: AppServer) -> None:
    with server.connect() as s:
        s.sendall(b"GET /raw/wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
        recv_head(s)
    with server.connect() as s:
        s.sendall(b"GET /raw/stream-until-gone HTTP/1.1\r\nHost: x\r\n\r\n")
        recv_head(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close → RST
    deadline = time.monotonic() + 10
    events = ""
    while time.monotonic() < deadline:
        events = get(server, "/raw/events").text
        if "disconnect" in events and "send-raised:ClientDisconnected" in events:
            break
        time.sleep(0.05)
    assert "disconnect" in events and "send-raised:ClientDisconnected" in events, events
