"""Request-smuggling vectors (CL.TE, TE.CL, TE.TE obfuscations, malformed chunked bodies, HTTP/1.0, upgrades) and
the one check they all share: the server answers each vector the way a single, unambiguous reading allows, and
never answers the request hidden in its body. Used by tests/serve/test_smuggling.py and bench/attack.py."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

# The request hidden in a body: a server that answers it has been smuggled past (its path is in no test root).
HIDDEN = b"GET /smuggled-8f3a HTTP/1.1\r\nHost: x\r\n\r\n"
LAST = b"GET /PATH HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Vector:
    name: str
    raw: bytes
    # "400": one 400 and the connection closes. "close": one answer (any status) and the connection closes.
    # "two": the vector and the request after it (LAST) answered in step, then the close LAST asked for.
    expect: str


def _post(headers: bytes, body: bytes, version: bytes = b"1.1") -> bytes:
    return b"POST /PATH HTTP/" + version + b"\r\nHost: x\r\n" + headers + b"\r\n" + body


_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
_CHUNK_END = b"0\r\n\r\n"
VECTORS: list[Vector] = [
    # CL.TE / TE.CL: both framings in one message (RFC 9112 §6.1: a server may reject, and must then close).
    Vector("cl-te", _post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", _CHUNK_END + HIDDEN), "400"),
    Vector(
        "te-cl",
        _post(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", b"5c\r\n" + HIDDEN + b"\r\n" + _CHUNK_END),
        "400",
    ),
    Vector("cl-cl-differ", _post(b"Content-Length: 0\r\nContent-Length: 44\r\n", HIDDEN), "400"),
    Vector("cl-list", _post(b"Content-Length: 0, 44\r\n", HIDDEN), "400"),
    Vector("cl-plus", _post(b"Content-Length: +44\r\n", HIDDEN), "400"),
    Vector("cl-hex", _post(b"Content-Length: 0x2c\r\n", HIDDEN), "400"),
    Vector("cl-negative", _post(b"Content-Length: -1\r\n", HIDDEN), "400"),
    Vector("cl-overflow", _post(b"Content-Length: 184467440737095516160\r\n", HIDDEN), "400"),
    Vector("cl-space-before-colon", _post(b"Content-Length : 44\r\n", HIDDEN), "400"),
    # TE.TE: an obfuscated Transfer-Encoding one reader takes and another ignores.
    Vector("te-te-dup", _post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", _CHUNK_END + HIDDEN), "400"),
    Vector("te-space-before-colon", _post(b"Transfer-Encoding : chunked\r\n", _CHUNK_END + HIDDEN), "400"),
    Vector("te-xchunked", _post(b"Transfer-Encoding: xchunked\r\n", _CHUNK_END + HIDDEN), "400"),
    Vector("te-chunked-not-last", _post(b"Transfer-Encoding: chunked, identity\r\n", _CHUNK_END + HIDDEN), "400"),
    Vector("te-obs-fold", _post(b"X: y\r\nTransfer-Encoding:\r\n chunked\r\n", _CHUNK_END + HIDDEN), "400"),
    Vector("te-leading-space", _post(b"X: y\r\n Transfer-Encoding: chunked\r\n", _CHUNK_END + HIDDEN), "400"),
    Vector("te-bare-lf", _post(b"X: y\nTransfer-Encoding: chunked\r\n", _CHUNK_END + HIDDEN), "400"),
    Vector("te-nul", _post(b"Transfer-Encoding: chunked\x00\r\n", _CHUNK_END + HIDDEN), "400"),
    Vector("te-vtab", _post(b"Transfer-Encoding:\x0bchunked\r\n", _CHUNK_END + HIDDEN), "400"),
    # Malformed chunked bodies: the framing error is the client's (400, close), never the app's (500).
    Vector("chunk-size-not-hex", _post(b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n" + _CHUNK_END), "400"),
    Vector("chunk-size-0x", _post(b"Transfer-Encoding: chunked\r\n", b"0x3\r\nabc\r\n" + _CHUNK_END), "400"),
    Vector("chunk-size-negative", _post(b"Transfer-Encoding: chunked\r\n", b"-3\r\nabc\r\n" + _CHUNK_END), "400"),
    Vector("chunk-size-overflow", _post(b"Transfer-Encoding: chunked\r\n", b"10000000000000000\r\nabc\r\n"), "400"),
    Vector("chunk-size-leading-space", _post(b"Transfer-Encoding: chunked\r\n", b" 3\r\nabc\r\n" + _CHUNK_END), "400"),
    Vector("chunk-data-too-long", _post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabcde\r\n" + _CHUNK_END), "400"),
    Vector("chunk-no-crlf-after-data", _post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc" + _CHUNK_END), "400"),
    Vector("chunk-bare-cr", _post(b"Transfer-Encoding: chunked\r\n", b"3\rabc\r\n" + _CHUNK_END), "400"),
    Vector("chunk-ext-ctl", _post(b"Transfer-Encoding: chunked\r\n", b"3;a=\x01\r\nabc\r\n" + _CHUNK_END), "400"),
    Vector(
        "chunk-bad-trailer", _post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n"), "400"
    ),
    Vector("chunk-smuggle-in-size", _post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n" + HIDDEN), "400"),
    # HTTP/1.0 with Transfer-Encoding: answered, then closed (RFC 9112 §6.1), with and without a body.
    Vector(
        "http10-te-get",
        b"GET /PATH HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        + _CHUNK_END
        + HIDDEN,
        "close",
    ),
    Vector(
        "http10-te-post",
        _post(
            b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n", b"3\r\nabc\r\n" + _CHUNK_END + HIDDEN, b"1.0"
        ),
        "close",
    ),
    Vector(
        "http10-te-post-empty",
        _post(b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n", _CHUNK_END + HIDDEN, b"1.0"),
        "close",
    ),
    # Upgrades that are not: "upgraded" is no token "upgrade"; plain HTTP, answered in step with what follows.
    Vector(
        "upgraded-not-upgrade",
        b"GET /PATH HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: keep-alive, upgraded\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" + LAST,
        "two",
    ),
    Vector(
        "upgrade-h2c",
        b"GET /PATH HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" + HIDDEN,
        "close",
    ),
]


def statuses(data: bytes) -> list[int]:
    """Status codes of the responses in ``data`` (the test roots and apps never put a status line in a body)."""
    return [int(m) for m in _STATUS.findall(data)]


def read_all(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything until the server closes; (bytes, closed) where closed is False when ``timeout`` ran out."""
    sock.settimeout(timeout)
    parts = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return b"".join(parts), False
        except (ConnectionResetError, BrokenPipeError):
            return b"".join(parts), True
        if not chunk:
            return b"".join(parts), True
        parts.append(chunk)


def check(v: Vector, data: bytes, closed: bool) -> str:
    """ "" when the answer to ``v`` is right, else what is wrong."""
    got = statuses(data)
    if b"smuggled-8f3a" in data or (len(got) > 1 and v.expect != "two"):
        return f"{v.name}: the hidden request was answered: {got}"
    if v.expect == "400":
        if got != [400] or not closed:
            return f"{v.name}: wanted 400 and close, got {got} closed={closed}"
    elif v.expect == "close":
        if len(got) != 1 or not closed:
            return f"{v.name}: wanted one answer and close, got {got} closed={closed}"
    elif len(got) != 2 or not closed:
        return f"{v.name}: wanted two answers in step and close, got {got} closed={closed}"
    return ""
