"""cycle.py (pure): the response state machine, framing choices, header validation, length accounting."""

from __future__ import annotations

import pytest

from zcopy.parts import FileSlice
from zcopy.serve.asgi.cycle import TRANSITIONS, AppError, Phase, ResponseCycle, error_response


def wire(parts: list[object]) -> bytes:
    return b"".join(p if isinstance(p, bytes) else b"<file %d+%d>" % (p.offset, p.count) for p in parts)  # type: ignore[union-attr]


def start(c: ResponseCycle, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    assert c.send({"type": "http.response.start", "status": status, "headers": headers or []}) == []


def cyc(method: bytes = b"GET", http10: bool = False, keep: bool = True) -> ResponseCycle:
    return ResponseCycle(head_only=method == b"HEAD", http10=http10, keep_alive=keep)


def test_transition_table_is_the_whole_protocol() -> None:
    assert set(TRANSITIONS) == {
        (Phase.START, "http.response.start"),
        (Phase.BODY, "http.response.body"),
        (Phase.BODY, "http.response.pathsend"),
        (Phase.BODY, "http.response.zerocopysend"),
    }
    c = cyc()
    with pytest.raises(AppError, match="unexpected"):
        c.send({"type": "http.response.body", "body": b"x"})
    start(c)
    with pytest.raises(AppError, match="unexpected"):
        c.send({"type": "http.response.start", "status": 200})
    c.send({"type": "http.response.body", "body": b"x"})
    assert c.done
    with pytest.raises(AppError, match="after the response was complete"):
        c.send({"type": "http.response.body", "body": b"x"})
    with pytest.raises(AppError):
        c.check_file("http.response.pathsend")
    with pytest.raises(AppError):
        cyc().send("not a dict")


def test_single_body_gets_content_length_and_one_write() -> None:
    c = cyc()
    start(c, 201, [(b"content-type", b"application/json")])
    parts = c.send({"type": "http.response.body", "body": b'{"a":1}'})
    assert len(parts) == 1  # head and body joined: one send(2)
    out = wire(parts)
    assert out.startswith(b"HTTP/1.1 201 Created\r\n") and out.endswith(b"\r\n\r\n{\"a\":1}")
    assert b"content-length: 7\r\n" in out and b"server: zcopy\r\n" in out and b"date: " in out
    assert c.done and c.keep_alive and not c.short


def test_streaming_is_chunked_on_11_and_close_delimited_on_10() -> None:
    c = cyc()
    start(c)
    out = wire(c.send({"type": "http.response.body", "body": b"ab", "more_body": True}))
    out += wire(c.send({"type": "http.response.body", "body": b"", "more_body": True}))  # empty: no 0-chunk early
    out += wire(c.send({"type": "http.response.body", "body": b"cde", "more_body": False}))
    assert b"transfer-encoding: chunked" in out and out.endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
    c = cyc(http10=True)
    start(c)
    out = wire(c.send({"type": "http.response.body", "body": b"ab", "more_body": True}))
    assert b"chunked" not in out and b"Connection: close" in out and not c.keep_alive


def test_no_body_for_head_204_304_but_their_length_is_kept() -> None:
    c = cyc(b"HEAD")
    start(c, 200, [(b"content-length", b"1000")])
    out = wire(c.send({"type": "http.response.body", "body": b"x" * 1000}))
    assert out.endswith(b"content-length: 1000\r\n\r\n") and c.done and c.keep_alive and not c.short
    for status in (204, 304):
        c = cyc()
        start(c, status)
        out = wire(c.send({"type": "http.response.body", "body": b""}))
        assert out.endswith(b"\r\n\r\n") and b"content-length" not in out and b"chunked" not in out


def test_content_length_accounting() -> None:
    c = cyc()
    start(c, 200, [(b"content-length", b"5")])
    c.send({"type": "http.response.body", "body": b"abc", "more_body": True})
    with pytest.raises(AppError, match="longer than its Content-Length"):
        c.send({"type": "http.response.body", "body": b"def"})
    c = cyc()
    start(c, 200, [(b"content-length", b"5")])
    c.send({"type": "http.response.body", "body": b"abc"})
    assert c.short and not c.keep_alive  # the client waits for 2 bytes that never come: close
    c = cyc()
    start(c, 200, [(b"content-length", b"5"), (b"Content-Length", b"5")])  # identical repeats are one
    assert wire(c.send({"type": "http.response.body", "body": b"abcde"})).count(b"ength: 5") == 1


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"-1")],
        [(b"content-length", b"5"), (b"content-length", b"6")],
        [(b"content-length", b"1e3")],
        [(b"x", b"a\r\nb")],
        [(b"x-echo", b"hello\r\nSet-Cookie: session=attacker")],  # a CR LF and a well-formed line after it
        [(b"x-echo", b"x\r\nTransfer-Encoding: chunked"), (b"content-length", b"2")],
        [(b"x", b"a\rb")],
        [(b"x", b"a\nb")],
        [(b"x", b"a\0b")],
        [(b"x", b"a\x7fb")],
        [(b"x: y\r\nz", b"v")],  # the split in the name
        [(b"x:", b"v")],
        [(b"", b"v")],
        [(b"bad name", b"v")],
        [("str", b"v")],
        [(b"x",)],
    ],
)
def test_invalid_heads_are_app_errors(headers: list[tuple[bytes, ...]]) -> None:
    with pytest.raises(AppError):
        cyc().send({"type": "http.response.start", "status": 200, "headers": headers})


def test_bad_header_error_names_the_header() -> None:
    with pytest.raises(AppError, match="x-echo"):
        cyc().send({"type": "http.response.start", "status": 200, "headers": [(b"x-echo", b"a\r\nb: c")]})
    c = cyc()  # a refused start leaves nothing behind: a corrected one is sent alone
    with pytest.raises(AppError):
        c.send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1"), (b"x-b", b"\n")]})
    start(c, 200, [(b"x-c", b"tab\there, obs-text \xe9, sp ")])
    out = wire(c.send({"type": "http.response.body", "body": b""}))
    assert b"x-a" not in out and b"x-c: tab\there, obs-text \xe9, sp \r\n" in out


@pytest.mark.parametrize("status", [100, 101, 199, 1000, "200", True, None])
def test_invalid_status(status: object) -> None:
    with pytest.raises(AppError, match="invalid status"):
        cyc().send({"type": "http.response.start", "status": status})


def test_framing_headers_are_ours() -> None:
    c = cyc()
    start(c, 200, [(b"transfer-encoding", b"chunked"), (b"connection", b"close"), (b"server", b"app")])
    out = wire(c.send({"type": "http.response.body", "body": b"x"}))
    assert b"transfer-encoding" not in out.lower() and out.count(b"onnection: close") == 1 and not c.keep_alive
    assert b"server: app" in out and b"server: zcopy" not in out


def test_file_parts_keep_order_and_framing() -> None:
    c = cyc()
    start(c)
    a = c.send({"type": "http.response.body", "body": b"<", "more_body": True})
    b = c.file(7, 10, 20, True, "f")
    d = c.file(7, 0, 0, True, "f")  # nothing to send: no empty chunk (which would end the body)
    e = c.send({"type": "http.response.body", "body": b">", "more_body": False})
    assert wire(a).endswith(b"1\r\n<\r\n") and wire(b) == b"14\r\n<file 10+20>\r\n" and d == []
    assert wire(e) == b"1\r\n>\r\n0\r\n\r\n"
    assert isinstance(b[1], FileSlice)


def test_pathsend_length_and_cap() -> None:
    c = cyc()
    start(c)
    parts = c.file(3, 0, 4096, False, "p", cap=True)  # no length from the app: we state the file's
    assert b"content-length: 4096" in wire(parts[:1]) and parts[1] == FileSlice(3, 0, 4096, "p") and c.done
    c = cyc()
    start(c, 200, [(b"content-length", b"100")])
    assert c.file(3, 0, 150, False, "p", cap=True)[1].count == 100  # type: ignore[union-attr]  # grew: cut
    c = cyc()
    start(c, 200, [(b"content-length", b"100")])
    assert c.file(3, 0, 60, False, "p", cap=True)[1].count == 100  # type: ignore[union-attr]  # shrank: EOF → close
    c = cyc()
    start(c, 200, [(b"content-length", b"100")])
    with pytest.raises(AppError):
        c.file(3, 0, 150, False, "z")  # zerocopysend's count is the app's own: overflow is its error
    c = cyc(b"HEAD")
    start(c, 200, [(b"content-length", b"100")])
    assert [p for p in c.file(3, 0, 100, False, "p", cap=True) if isinstance(p, FileSlice)] == []


def test_abandon_and_error_response() -> None:
    c = cyc()
    start(c)
    c.abandon()
    assert c.done and not c.keep_alive
    r = error_response(500, keep_alive=True, http10=False, head_only=False)
    assert r.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and r.endswith(b"500 Internal Server Error\n")
    assert b"Connection" not in r
    assert error_response(503, keep_alive=False, http10=False, head_only=True).endswith(b"Connection: close\r\n\r\n")


@pytest.mark.parametrize(
    "header", [(b"x-a", b"v\r\nSet-Cookie: a=b"), (b"x-a", b"v\x01"), (b"x(a", b"v"), (b"x a", b"v"), (b"", b"v")]
)
def test_configured_headers_meet_the_same_rule(header: tuple[bytes, bytes]) -> None:
    # --header NAME:VALUE (and Server(headers=...)): refused at start-up, never written (issue #20 F2).
    from zcopy.serve.asgi.cycle import HeadDefaults
    from zcopy.serve.settings import SettingsError, encode_headers

    with pytest.raises(ValueError):
        HeadDefaults(headers=[header])
    with pytest.raises(SettingsError, match="--header: invalid header"):
        encode_headers([(header[0].decode("latin-1"), header[1].decode("latin-1"))])
