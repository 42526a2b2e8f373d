"""One ASGI response as a state machine: messages in, ordered wire parts (bytes and file slices) out (pure).

Every transition is in ``TRANSITIONS``; a message the table does not allow is the application's mistake
(``AppError``, raised back into the app by ``send()``). Framing follows RFC 9112 §6: no body for HEAD, 1xx, 204
and 304; the app's Content-Length when given (overflow is an error, underflow leaves the connection unusable);
otherwise Content-Length when the whole body comes in one message, chunked on HTTP/1.1, close-delimited on 1.0.
The head is serialised with the first body message, so that decision can see it and the two leave in one write.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from zcopy.parts import FileSlice, Part
from zcopy.serve import conditional, fields, head

# A head and a body below this are joined into one bytes object (one send); above it they go as two parts,
# the head with MSG_MORE, so a big body is never copied just to save a syscall.
JOIN_BELOW = 16 << 10

_SPECIAL = frozenset((b"content-length", b"transfer-encoding", b"connection", b"server", b"date"))
_SERVER_LINE = b"server: " + head.SERVER + b"\r\n"



class HeadDefaults:
    """What every response head gets unless the app sent its own: uvicorn's --server-header, --date-header and
    --header NAME:VALUE lines (validated and encoded once, at start-up)."""

    __slots__ = ("date", "extra", "server")

    def __init__(self, server: bool = True, date: bool = True, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        custom = fields.check_all(list(headers))  # BadField (a ValueError) names a header that must not be written
        self.server = server and not any(name == b"server" for name, _ in custom)
        self.date = date
        self.extra = b"".join(name + b": " + value + b"\r\n" for name, value in custom)


DEFAULT_HEAD = HeadDefaults()
_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


class AppError(RuntimeError):
    """The application broke the ASGI HTTP protocol (a message out of order, a bad header, too many bytes)."""


class Phase:
    """Phases as plain strings: they key TRANSITIONS, and an Enum's hash is a Python-level call per lookup."""

    START = "start"  # waiting for http.response.start
    BODY = "body"  # head accepted, body messages may follow
    DONE = "done"  # the response is complete


# (phase, message type) → the handler method; anything absent is an AppError. One table, like h11's _state.py.
TRANSITIONS: dict[tuple[str, str], str] = {
    (Phase.START, "http.response.start"): "_start",
    (Phase.BODY, "http.response.body"): "_body",
    (Phase.BODY, "http.response.pathsend"): "_file",
    (Phase.BODY, "http.response.zerocopysend"): "_file",
}

_date_sec = -1
_date = b""


def date_now() -> bytes:
    """The IMF-fixdate of this second, formatted once per second."""
    global _date_sec, _date
    now = int(time.time())
    if now != _date_sec:
        _date_sec = now
        _date = conditional.http_date(now)
    return _date


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))


_STATUS_LINES = {code: status_line(code) for code in _REASONS}


def error_response(status: int, *, keep_alive: bool, http10: bool, head_only: bool) -> bytes:
    """A complete small text response the server makes itself (400, 500, 503)."""
    body = head.error_body(status)
    h = head.build(
        status,
        date_now(),
        [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Content-Length", b"%d" % len(body))],
        keep_alive=keep_alive,
        http10=http10,
    )
    return h if head_only else h + body


class Framing(enum.Enum):
    NONE = "none"  # HEAD, 1xx, 204, 304: body bytes from the app are dropped
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"
    CLOSE = "close"  # HTTP/1.0 without a length: the body ends when we close


class ResponseCycle:
    """The response side of one request. ``send(message)`` validates and returns the parts to write.

    ``keep_alive`` starts as what the request allows and only ever turns False (app asked to close, HTTP/1.0
    close-delimited body, a short body). ``short`` is set when the body ended below its Content-Length.
    """

    __slots__ = (
        "_headers",
        "defaults",
        "done",
        "framing",
        "head_only",
        "head_sent",
        "http10",
        "keep_alive",
        "length",
        "phase",
        "sent",
        "short",
        "started",
        "status",
    )

    def __init__(
        self, *, head_only: bool, http10: bool, keep_alive: bool, defaults: HeadDefaults = DEFAULT_HEAD
    ) -> None:
        self.defaults = defaults
        self.phase = Phase.START
        self.head_only = head_only
        self.http10 = http10
        self.keep_alive = keep_alive
        self.status = 0
        self.length: int | None = None
        self.framing = Framing.NONE
        self.sent = 0  # body bytes framed so far (not counting chunk framing)
        self.short = False
        self._headers: list[bytes] = []
        self.head_sent = False  # the head has been handed out as a part (until then a 500 can still replace it)
        self.started = False  # phase is not START (plain attributes: read on every message, no property calls)
        self.done = False  # phase is DONE

    def send(self, message: Any) -> list[Part]:
        """Parts for one message other than a file one (the connection resolves files and calls ``file()``)."""
        kind = message.get("type") if isinstance(message, dict) else None
        name = TRANSITIONS.get((self.phase, kind))  # type: ignore[arg-type]
        if name is None or name == "_file":
            if self.phase == Phase.DONE:
                raise AppError(f"ASGI message {kind!r} sent after the response was complete")
            if name is None:
                raise AppError(f"unexpected ASGI message {kind!r} in phase {self.phase}")
            raise AppError(f"{kind!r} must be handed to ResponseCycle.file()")
        if name == "_start":
            self._start(message)
            return []
        return self.body(message)

    def check_file(self, kind: str) -> None:
        """Raise AppError unless a file message (pathsend / zerocopysend) may come now."""
        if TRANSITIONS.get((self.phase, kind)) != "_file":
            if self.phase == Phase.DONE:
                raise AppError(f"ASGI message {kind!r} sent after the response was complete")
            raise AppError(f"unexpected ASGI message {kind!r} in phase {self.phase}")

    # -- transitions ------------------------------------------------------------------------------------
    def _start(self, message: dict[str, Any]) -> None:
        status = message.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 999:
            # 1xx are not ASGI responses (100 Continue is the server's, answered on the first receive()).
            raise AppError(f"http.response.start: invalid status {status!r}")
        lines: list[bytes] = []
        has_server = has_date = False
        length: int | None = None
        name_ok, value_ok = fields.NAME_OK, fields.VALUE_OK
        try:
            for name, value in message.get("headers") or ():
                # Each field on its own (fields.py): a CR LF inside a value must never start a line of its own.
                if not name_ok(name) or not value_ok(value):
                    fields.check(name, value)  # raises BadField, naming the header
                low = name.lower()
                if low in _SPECIAL:
                    if low == b"content-length":
                        n = int(value) if value.isdigit() else -1
                        if n < 0 or (length is not None and n != length):
                            raise AppError(f"http.response.start: invalid Content-Length {value!r}")
                        if length is not None:
                            continue  # an identical repeat: send it once
                        length = n
                    elif low == b"transfer-encoding":
                        continue  # framing is ours to choose (_head); a body the app framed would be framed twice
                    elif low == b"connection":
                        if b"close" in value.lower():
                            self.keep_alive = False
                        continue  # we write the one Connection header that matches what we do
                    elif low == b"server":
                        has_server = True
                    else:
                        has_date = True
                lines.append(name + b": " + value + b"\r\n")
        except fields.BadField as exc:
            raise AppError(f"http.response.start: {exc}") from None
        except (TypeError, ValueError, AttributeError):
            raise AppError(f"http.response.start: headers must be [name, value] pairs of bytes: {message!r}") from None
        self._headers = lines
        self.status = status
        self.length = length
        defaults = self.defaults  # uvicorn's order: date, server, --header lines, then the app's
        if defaults.extra:
            lines.insert(0, defaults.extra)
        if not has_server and defaults.server:
            lines.insert(0, _SERVER_LINE)
        if not has_date and defaults.date:
            lines.insert(0, b"date: " + date_now() + b"\r\n")
        self.phase = Phase.BODY
        self.started = True

    def _head(self, first: int, more: bool) -> bytes:
        """Choose the framing (seeing the first body message: ``first`` bytes, ``more`` to come); serialise."""
        status = self.status
        extra = b""
        if self.head_only or status in (204, 304) or status < 200:
            self.framing = Framing.NONE
        elif self.length is not None:
            self.framing = Framing.LENGTH
        elif not more:
            self.framing = Framing.LENGTH
            self.length = first
            extra = b"content-length: %d\r\n" % first
        elif self.http10:
            self.framing = Framing.CLOSE
            self.keep_alive = False
        else:
            self.framing = Framing.CHUNKED
            extra = b"transfer-encoding: chunked\r\n"
        if self.keep_alive:
            conn = b"Connection: keep-alive\r\n\r\n" if self.http10 else b"\r\n"
        else:
            conn = b"Connection: close\r\n\r\n"
        return b"".join((_STATUS_LINES.get(status) or status_line(status), *self._headers, extra, conn))

    def _end(self, more: bool, parts: list[Part]) -> None:
        if more:
            return
        self.phase = Phase.DONE
        self.done = True
        if self.framing is Framing.CHUNKED:
            parts.append(b"0\r\n\r\n")
        elif self.framing is Framing.LENGTH and self.length is not None and self.sent < self.length:
            self.short = True  # the client is still waiting for bytes that will never come: close
            self.keep_alive = False

    def body(self, message: dict[str, Any]) -> list[Part]:
        """Parts for an ``http.response.body`` message; the caller checked that the phase is BODY."""
        data = message.get("body", b"")
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise AppError(f"http.response.body 'body' must be bytes, not {type(data).__name__}")
            data = bytes(data)
        more = message.get("more_body", False)
        n = len(data)
        h = None if self.head_sent else self._head(n, more)
        framing = self.framing
        if framing is Framing.LENGTH:
            assert self.length is not None
            if self.sent + n > self.length:
                raise AppError(f"response body longer than its Content-Length ({self.sent + n} > {self.length})")
            if h is not None and n + len(h) < JOIN_BELOW:
                parts: list[Part] = [h + data]  # the common case: head and body in one send
            else:
                parts = [data] if h is None else [h, data]
        else:
            parts = [] if h is None else [h]
            if framing is Framing.NONE:
                n = 0
            elif framing is Framing.CHUNKED:
                if n:
                    parts += (b"%x\r\n" % n, data, b"\r\n")
            elif n:
                parts.append(data)
        self.sent += n
        self.head_sent = True  # only now: a message refused above leaves room for a 500 instead
        if not more:
            self._end(more, parts)
        return _joined(parts) if len(parts) > 1 else parts

    def file(self, fd: int, offset: int, count: int, more: bool, name: str, *, cap: bool = False) -> list[Part]:
        """Parts for ``count`` bytes of ``fd`` from ``offset``. ``cap``: a path the app did not measure itself
        (pathsend) is cut to the declared Content-Length instead of overflowing it."""
        parts: list[Part] = []
        if not self.head_sent:
            parts.append(self._head(count, more))
        framing = self.framing
        if framing is Framing.NONE:
            count = 0
        elif framing is Framing.LENGTH:
            assert self.length is not None
            left = self.length - self.sent
            if count > left:
                if not cap:
                    total = self.sent + count
                    raise AppError(f"response body longer than its Content-Length ({total} > {self.length})")
                count = left
            elif cap and not more and count < left:
                # The file is shorter than the length promised (it shrank after the app stat'ed it): ask for the
                # promised length so sendfile meets the end of file and the connection closes (truncation).
                count = left
        if count > 0:
            if framing is Framing.CHUNKED:
                parts.append(b"%x\r\n" % count)
                parts.append(FileSlice(fd, offset, count, name))
                parts.append(b"\r\n")
            else:
                parts.append(FileSlice(fd, offset, count, name))
        self.sent += count
        self.head_sent = True
        self._end(more, parts)
        return parts

    def abandon(self, *, keep_alive: bool = False) -> None:
        """Nothing more will be sent for this response: the app failed, returned mid-response, or the server
        answered in its place (``keep_alive`` then says whether that answer left the connection usable)."""
        self.phase = Phase.DONE
        self.done = self.started = True
        self.keep_alive = keep_alive


def _joined(parts: list[Part]) -> list[Part]:
    """Small adjacent byte strings as one (one send instead of several); big ones left alone (no copy)."""
    if len(parts) < 2:
        return parts
    total = 0
    for p in parts:
        if not isinstance(p, bytes):
            return parts
        total += len(p)
    if total >= JOIN_BELOW:
        return parts
    return [b"".join(parts)]  # type: ignore[arg-type]


def headers_of(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Request header list as the scope wants it: names lower-cased, order and duplicates kept."""
    return [(n.lower(), v) for n, v in raw]
