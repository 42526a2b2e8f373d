"""Response head serialization: status line, fixed headers, small error bodies (pure).

Heads are built as bytes once per response (or once per cached file, see cache.py) and sent with the body
by the caller; nothing here knows about sockets.
"""

from __future__ import annotations

SERVER = b"zcopy"

REASONS: dict[int, bytes] = {
    200: b"OK",
    206: b"Partial Content",
    301: b"Moved Permanently",
    304: b"Not Modified",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    412: b"Precondition Failed",
    413: b"Content Too Large",
    414: b"URI Too Long",
    416: b"Range Not Satisfiable",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}

ALLOW = b"GET, HEAD"


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))


def build(status: int, date: bytes, headers: list[tuple[bytes, bytes]], *, keep_alive: bool, http10: bool) -> bytes:
    """A complete response head ending in CRLF CRLF. ``date`` is the cached IMF-fixdate of this second."""
    out = [status_line(status), b"Server: ", SERVER, b"\r\nDate: ", date, b"\r\n"]
    for name, value in headers:
        out += (name, b": ", value, b"\r\n")
    out.append(connection_header(keep_alive, http10))
    out.append(b"\r\n")
    return b"".join(out)


def connection_header(keep_alive: bool, http10: bool) -> bytes:
    """HTTP/1.1 is persistent by default, 1.0 is not (RFC 9112 §9.3): say so only when it differs."""
    if not keep_alive:
        return b"Connection: close\r\n"
    return b"Connection: keep-alive\r\n" if http10 else b""


def error_body(status: int) -> bytes:
    return b"%d %s\n" % (status, REASONS.get(status, b"Error"))
