"""Access log lines: uvicorn's (``INFO:     127.0.0.1:51234 - "GET / HTTP/1.1" 200 OK``, through the
``uvicorn.access`` logger: logconfig.py), and/or Common Log Format or JSON to a file reopened on SIGHUP (logrotate)."""

from __future__ import annotations

import http
import logging
import sys
import time
from typing import Any, TextIO

from zcopy import jsonout
from zcopy.serve import logconfig

_access = logging.getLogger("uvicorn.access")

_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def clf_time(seconds: float) -> str:
    t = time.gmtime(seconds)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def _printable(raw: bytes) -> str:
    # Request targets are attacker-controlled: escape everything that could forge a log line or a terminal code.
    return raw.decode("latin-1").encode("unicode_escape").decode("ascii").replace('"', '\\"')


_PHRASES = {s.value: s.phrase for s in http.HTTPStatus}


def _plain(handler: logging.StreamHandler[Any]) -> bool:
    """Is `uvicorn.access` still exactly as the default configuration left it (checked per line: an app may add a
    filter or a handler at any time)?"""
    formatter = handler.formatter
    return (
        _access.handlers == [handler]
        and not _access.filters
        and not handler.filters
        and type(formatter) is logconfig.AccessFormatter
        and not formatter.use_colors
        and formatter._fmt == logconfig.ACCESS_FORMAT
        and handler.level <= logging.INFO
    )


def client_addr(scope: dict[str, Any]) -> str:
    """``host:port`` of the scope's client, as uvicorn's lines name it ("" when unknown)."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else ""


def full_path(scope: dict[str, Any]) -> str:
    """The request's path and query as uvicorn's lines show them: as received (without the --root-path that
    zcopy's ``raw_path`` carries), raw bytes, a quote escaped as %22."""
    raw: bytes = scope["raw_path"]
    root: str = scope.get("root_path", "")
    if root and raw.startswith(root.encode()):
        raw = raw[len(root) :]
    path = raw.decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    return path.replace('"', "%22")


class AccessLog:
    """Writes one record per response: uvicorn's line when ``uvicorn`` (to the ``uvicorn.access`` logger), and a
    Common Log Format or JSON line when ``path`` is given ("-" = stderr). ``reopen()`` is what SIGHUP calls."""

    def __init__(self, path: str | None, *, json_lines: bool = False, uvicorn: bool = False) -> None:
        self.path = path
        self.json_lines = json_lines
        self.uvicorn = uvicorn
        self._stream: TextIO | None = self._open()

    def _open(self) -> TextIO | None:
        if self.path is None:
            return None
        if self.path == "-":
            return sys.stderr
        return open(self.path, "a", buffering=1, encoding="utf-8")  # line-buffered: a crash loses no line

    def reopen(self) -> None:
        old = self._stream
        self._stream = self._open()
        if old is not None and old is not sys.stderr:
            old.close()

    def close(self) -> None:
        if self._stream is not None and self._stream is not sys.stderr:
            self._stream.close()

    def write(
        self,
        peer: str,
        method: bytes,
        target: bytes,
        version: bytes,
        status: int,
        nbytes: int,
        route: str,
        scope: dict[str, Any] | None = None,
    ) -> None:
        """One response. ``scope`` (ASGI) gives uvicorn's line the client's port and the path as the app saw it.
        Status 0 (no response started: the client went away first) has no uvicorn line, as uvicorn writes its
        line when the response starts; the file's line keeps the record."""
        if self.uvicorn and status and _access.isEnabledFor(logging.INFO):
            if scope is not None:
                who, what, http_version = client_addr(scope), full_path(scope), scope["http_version"]
            else:
                who, what, http_version = peer, _printable(target), version.decode("latin-1")
            verb = method.decode("latin-1")
            handler = logconfig.default_access
            if handler is not None and _plain(handler):
                # The default configuration, untouched: the same line as the formatter's, made without a LogRecord,
                # a record copy and two format passes (measured: docs/benchmarks.md, "access line").
                phrase = _PHRASES.get(status, "")
                line = f'INFO:     {who} - "{verb} {what} HTTP/{http_version}" {status} {phrase}\n'
                handler.acquire()
                try:
                    handler.stream.write(line)
                    handler.stream.flush()
                finally:
                    handler.release()
            else:
                # uvicorn's record arguments, in its order: its AccessFormatter (or ours) makes the line.
                _access.info('%s - "%s %s HTTP/%s" %d', who, verb, what, http_version, status)
        if self._stream is None:
            return
        now = time.time()
        if self.json_lines:
            line = jsonout.dumps(
                {
                    "remote": peer,
                    "time": now,
                    "method": _printable(method),
                    "target": _printable(target),
                    "version": version.decode("latin-1"),
                    "status": status,
                    "bytes": nbytes,
                    "route": route,
                }
            )
        else:
            size = str(nbytes) if nbytes else "-"
            line = (
                f'{peer} - - [{clf_time(now)}] "{_printable(method)} {_printable(target)} '
                f'HTTP/{version.decode("latin-1")}" {status} {size}'
            )
        self._stream.write(line + "\n")
