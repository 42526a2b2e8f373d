"""A terminal progress bar (bytes, rate, ETA) drawn on stderr only when stderr is a TTY; silent otherwise."""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False  # importing typing costs `zcopy cp` ~3 ms of start-up
if TYPE_CHECKING:
    from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def plural(n: int, noun: str) -> str:
    """`1 file`, `2 files`, `0 files` (English nouns that take an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class Progress:
    """Call `update(done, total)`; `close()` ends the line. Redraws at most 10 times a second."""

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self._t0 = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        elapsed = max(now - self._t0, 1e-9)
        rate = done / elapsed
        frac = done / total if total else 1.0
        width = 24
        bar = "█" * int(frac * width) + "·" * (width - int(frac * width))
        eta = (total - done) / rate if rate > 0 else 0.0
        self.stream.write(
            f"\r{self.label} {bar} {frac * 100:5.1f}% {human_bytes(done)}/{human_bytes(total)} "
            f"{human_bytes(rate)}/s ETA {eta:4.0f}s "
        )
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
