"""What the direct route achieves on this machine, measured rather than assumed.

Whether O_DIRECT beats the page cache for a cold copy depends on the machine and the hour: on a VM whose page cache
is cheap, `cp` + `sync` finished a cold 1 GiB copy in 0.59 s where the direct route took 1.01 s; two hours later
`cp` + `sync` took 2.69 s. So the first large cold copy between two file systems measures both: its first `PROBE`
bytes go by direct, the next `PROBE` by the page cache (copy_file_range, or the next route of the table), each made
durable (fdatasync) and timed; the rest goes by the faster. The two rates are kept per (source, target) file system
for `TTL` seconds in the user's cache directory ($XDG_CACHE_HOME/zcopy/disk-rates.json), so the copies after it
choose without measuring, and `zcopy explain --to file` tells the same. A missing or unreadable cache is only a
measurement to make again.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable

from zcopy import routes
from zcopy._record import Record
from zcopy.routes import direct

PROBE = 32 << 20  # bytes per route in a measurement
MEASURE_MIN = 4 * PROBE  # only a copy this large measures (the two probes are at most half of it)
TTL = 600.0  # seconds a measurement is trusted: the page cache's cost on a shared VM changes within the hour

_STEP = 64 << 20  # progress updates for the rest of a measured copy


class Rates(Record):
    """Durable cold-copy rates (bytes/s) of the direct route and of the page-cache route, and when measured."""

    __slots__ = ("cache_bps", "direct_bps", "via", "when")

    def __init__(self, direct_bps: float, cache_bps: float, when: float, via: str = "copy_file_range") -> None:
        self.direct_bps = direct_bps
        self.cache_bps = cache_bps
        self.when = when
        self.via = via  # the page-cache route that was measured

    def as_choice(self, now: float | None = None) -> direct.Measured:
        return direct.Measured(self.direct_bps, self.cache_bps, (time.time() if now is None else now) - self.when,
                               self.via)  # fmt: skip


def cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zcopy", "disk-rates.json")


def key(src_fd: int, dst_fd: int) -> str:
    """The pair of file systems (device numbers) a measurement holds for."""
    a, b = os.fstat(src_fd).st_dev, os.fstat(dst_fd).st_dev
    return f"{os.major(a)}:{os.minor(a)}>{os.major(b)}:{os.minor(b)}"


def _load() -> dict[str, dict[str, float | str]]:
    try:
        with open(cache_path()) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(src_fd: int, dst_fd: int, now: float | None = None) -> Rates | None:
    """The measurement for these two file systems, if one younger than TTL is kept."""
    rec = _load().get(key(src_fd, dst_fd))
    now = time.time() if now is None else now
    try:
        assert isinstance(rec, dict)
        rates = Rates(float(rec["direct_bps"]), float(rec["cache_bps"]), float(rec["when"]), str(rec.get("via", "?")))
    except (AssertionError, KeyError, TypeError, ValueError):
        return None
    return rates if 0 <= now - rates.when < TTL and rates.direct_bps > 0 and rates.cache_bps > 0 else None


def remember(src_fd: int, dst_fd: int, rates: Rates) -> None:
    """Keep a measurement (written to a temp file and renamed; a cache that cannot be written is skipped)."""
    path = cache_path()
    data = _load()
    data[key(src_fd, dst_fd)] = {"direct_bps": rates.direct_bps, "cache_bps": rates.cache_bps, "when": rates.when,
                                 "via": rates.via}  # fmt: skip
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


def should_measure(src_fd: int, dst_fd: int, size: int) -> bool:
    """A copy that direct.choose sent to direct without a measurement, and big enough to make one."""
    return size >= MEASURE_MIN and lookup(src_fd, dst_fd) is None


def measured_copy(
    src_fd: int, dst_fd: int, size: int, name: str, progress: Callable[[int, int], None] | None = None,
    probe: int = PROBE,
) -> routes.Moved:  # fmt: skip
    """Copy `size` bytes from offset 0 to offset 0, measuring on the way: `probe` bytes by direct, the next `probe`
    by the page cache, each fdatasync'ed and timed; the rest by the faster. Remembers the rates; the returned Moved
    names the route of the rest, and its reason says what was measured (each part is its own `observe` operation)."""
    t0 = time.perf_counter()
    a = routes.move(src_fd, dst_fd, 0, probe, route=direct.NAME, dst_offset=0, name=name, op="copy",
                    reason="measuring the direct route on this copy")  # fmt: skip
    os.fdatasync(dst_fd)
    t1 = time.perf_counter()
    b = routes.move(src_fd, dst_fd, a.nbytes, probe, dst_offset=a.nbytes, name=name, op="copy",
                    reason="measuring the page cache on this copy")  # fmt: skip
    os.fdatasync(dst_fd)
    t2 = time.perf_counter()
    done = a.nbytes + b.nbytes
    rates = Rates(a.nbytes / max(t1 - t0, 1e-9), b.nbytes / max(t2 - t1, 1e-9), time.time(), b.route)
    if a.nbytes == probe and b.nbytes == probe:
        remember(src_fd, dst_fd, rates)
    choice = rates.as_choice()
    use, why = direct.choose(size, 0.0, measured=choice)
    why += f" (measured on this copy: the first {probe >> 20} MiB by direct, the next by {b.route})"
    if progress is not None:
        progress(done, size)
    rest: routes.Moved | None = None
    while done < size:
        step = min(_STEP, size - done)
        r = routes.move(src_fd, dst_fd, done, step, dst_offset=done, name=name, op="copy",
                        route=rest.route if rest is not None else None,
                        prefer=(direct.NAME if use else None) if rest is None else None, reason=why)  # fmt: skip
        rest = rest or r
        done += r.nbytes
        if progress is not None:
            progress(done, size)
        if r.nbytes < step:
            break
    last = rest or b
    return routes.Moved(done, last.route, last.skipped, {}, 0, last.status, a.src_kind, a.dst_kind, why)


__all__ = ["MEASURE_MIN", "PROBE", "TTL", "Rates", "cache_path", "lookup", "measured_copy", "remember",
           "should_measure"]  # fmt: skip
