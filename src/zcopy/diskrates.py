"""What the direct route achieves on this machine, measured on whole copies rather than assumed.

Whether O_DIRECT beats the page cache for a cold copy depends on the machine and the hour (issue #22 saw `cp` +
`sync` beat the direct route on one VM and lose to it two hours later). A short probe cannot tell: the page
cache's cost grows faster than the bytes (bench/direct.py sets the first 32 MiB beside the whole file, durable,
for each route; docs/architecture.md). So the rates come from whole copies of at least `MEASURE_MIN` bytes of a
cold source:

- every such copy by direct keeps its durable rate (bytes over the copy and its fsync);
- when the direct rate is known and the page cache's is not (or is older than `TTL`), the next such copy goes
  through the page cache, fdatasync'ed so that both rates are of durable copies, and keeps that rate;
- with both known, the faster route is chosen, and the reason names both rates and their age.

The rates are kept per (source, target) file system in the user's cache directory
($XDG_CACHE_HOME/zcopy/disk-rates.json, temp file + rename); a missing or unreadable cache is only a measurement
to make again.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from typing import NamedTuple

from zcopy import pagecache, routes
from zcopy._record import Record
from zcopy.routes import direct

MEASURE_MIN = 256 << 20  # copies this large measure: the page cache's cost shows at scale, not in a short probe
TTL = 1800.0  # seconds a rate is trusted: the page cache's cost on a shared VM changes within the hour


class Rates(Record):
    """Durable cold-copy rates (bytes/s) of the direct route and of the page-cache route (None: not measured, or
    older than TTL), and when each was measured (time.time())."""

    __slots__ = ("cache_bps", "cache_when", "direct_bps", "direct_when", "via")

    def __init__(
        self, direct_bps: float | None = None, direct_when: float = 0.0, cache_bps: float | None = None,
        cache_when: float = 0.0, via: str = "copy_file_range",
    ) -> None:  # fmt: skip
        self.direct_bps = direct_bps
        self.direct_when = direct_when
        self.cache_bps = cache_bps
        self.cache_when = cache_when
        self.via = via  # the page-cache route that was measured

    def as_choice(self, now: float | None = None) -> direct.Measured:
        now = time.time() if now is None else now
        return direct.Measured(self.direct_bps, self.cache_bps, now - self.direct_when, now - self.cache_when,
                               self.via)  # fmt: skip


def cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zcopy", "disk-rates.json")


def key(src_fd: int, dst_fd: int) -> str:
    """The pair of file systems (device numbers) a measurement holds for."""
    a, b = os.fstat(src_fd).st_dev, os.fstat(dst_fd).st_dev
    return f"{os.major(a)}:{os.minor(a)}>{os.major(b)}:{os.minor(b)}"


def _load() -> dict[str, object]:
    try:
        with open(cache_path()) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fresh(rec: dict[str, object], name: str, now: float) -> tuple[float | None, float]:
    try:
        bps, when = float(rec[f"{name}_bps"]), float(rec[f"{name}_when"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None, 0.0
    return (bps, when) if bps > 0 and 0 <= now - when < TTL else (None, 0.0)


def lookup(src_fd: int, dst_fd: int, now: float | None = None) -> Rates:
    """The rates kept for these two file systems; a rate older than TTL (or unreadable) is None."""
    rec = _load().get(key(src_fd, dst_fd))
    if not isinstance(rec, dict):
        return Rates()
    now = time.time() if now is None else now
    d, dw = _fresh(rec, "direct", now)
    c, cw = _fresh(rec, "cache", now)
    return Rates(d, dw, c, cw, str(rec.get("via", "copy_file_range")))


def record(src_fd: int, dst_fd: int, route: str, bps: float, now: float | None = None) -> None:
    """Keep the durable rate a whole cold copy achieved by `route` (written to a temp file and renamed; a cache that
    cannot be written is skipped: the next copy measures again)."""
    path = cache_path()
    data = _load()
    k = key(src_fd, dst_fd)
    rec = data.get(k)
    rec = dict(rec) if isinstance(rec, dict) else {}
    name = "direct" if route == direct.NAME else "cache"
    rec[f"{name}_bps"] = bps
    rec[f"{name}_when"] = time.time() if now is None else now
    if name == "cache":
        rec["via"] = route
    data[k] = rec
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".disk-rates.", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class Decision(NamedTuple):
    """How a whole-file copy goes: the route to try first (None: the table's order), why, and whether this copy
    keeps its rate (`measure`), going through the page cache to measure it (`explore`: then fdatasync'ed)."""

    prefer: str | None
    why: str
    measure: bool = False
    explore: bool = False


def decide(src_fd: int, size: int, dst_fd: int | None = None) -> Decision:
    """Direct for a large source not in the page cache (mincore), unless durable cold copies between these file
    systems were measured faster through the page cache; see the module's text for how rates are gathered."""
    if size < direct.THRESHOLD:
        return Decision(None, direct.choose(size, None, direct.THRESHOLD)[1])
    cached = pagecache.residency(src_fd).fraction
    rates = lookup(src_fd, dst_fd) if dst_fd is not None else Rates()
    big = dst_fd is not None and size >= MEASURE_MIN
    use, why = direct.choose(size, cached, direct.THRESHOLD, rates.as_choice(), explore=big)
    cold = cached is not None and cached < direct.CACHED_FRACTION
    explore = big and cold and not use and rates.direct_bps is not None and rates.cache_bps is None
    return Decision(direct.NAME if use else None, why, big and cold and (use or explore), explore)


def finish(src_fd: int, dst_fd: int, decision: Decision, moved: routes.Moved, started: float) -> None:
    """After the copy a decision asked to measure: make an exploring page-cache copy durable (fdatasync; a direct
    copy was fsynced by the caller) and keep the rate, counted from `started` (time.perf_counter())."""
    if not decision.measure or moved.nbytes == 0:
        return
    if moved.route != direct.NAME:
        if not decision.explore:
            return
        os.fdatasync(dst_fd)
    record(src_fd, dst_fd, moved.route, moved.nbytes / max(time.perf_counter() - started, 1e-9))


__all__ = ["MEASURE_MIN", "TTL", "Decision", "Rates", "cache_path", "decide", "finish", "key", "lookup", "record"]
