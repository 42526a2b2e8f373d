"""Access log lines in Common Log Format or JSON, to a stream or a file reopened on SIGHUP (for logrotate)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from zcopy import jsonout

_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def clf_time(seconds: float) -> str:
    t = time.gmtime(seconds)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def _printable(raw: bytes) -> str:
    # Request targets are attacker-controlled: escape everything that could forge a log line or a terminal code.
    return raw.decode("latin-1").encode("unicode_escape").decode("ascii").replace('"', '\\"')


class AccessLog:
    """Writes one line per response; ``path`` "-" means stderr. ``reopen()`` is what SIGHUP calls."""

    def __init__(self, path: str, *, json_lines: bool = False) -> None:
        self.path = path
        self.json_lines = json_lines
        self._stream: TextIO = self._open()

    def _open(self) -> TextIO:
        if self.path == "-":
            return sys.stderr
        return open(self.path, "a", buffering=1, encoding="utf-8")  # line-buffered: a crash loses no line

    def reopen(self) -> None:
        old = self._stream
        self._stream = self._open()
        if old is not sys.stderr:
            old.close()

    def close(self) -> None:
        if self._stream is not sys.stderr:
            self._stream.close()

    def write(
        self, peer: str, method: bytes, target: bytes, version: bytes, status: int, nbytes: int, route: str
    ) -> None:
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
