"""Benchmark statistics and sampling plans: pure functions, no I/O.

Owns the log-spaced size grid, the per-round shuffled contender order, and the median/min/max summary
that every bench number is reported as.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

_UNITS = {"": 1, "b": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": GiB, "gib": GiB}


@dataclass(frozen=True)
class Summary:
    """A repeated measurement: its median with the smallest and largest sample, and how many there were."""

    median: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}


def summarize(samples: Sequence[float]) -> Summary:
    """Median/min/max of the samples; medians because one preempted round on a shared machine is common."""
    if not samples:
        raise ValueError("no samples to summarize")
    return Summary(statistics.median(samples), min(samples), max(samples), len(samples))


def parse_size(text: str) -> int:
    """'256M', '4KiB', '1g', '4096' → bytes (binary units: the page cache counts in 4 KiB pages)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 4096, 64K, 256M, 1G)")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value < 1 or value != int(value):
        raise ValueError(f"not a whole positive number of bytes: {text!r}")
    return int(value)


def log_sizes(smallest: int, largest: int, factor: int = 4) -> list[int]:
    """smallest, smallest×factor, … up to largest (inclusive if it lands on the grid; else largest is appended).

    factor 4 gives 4 KiB, 16 KiB, … 1 GiB: ten points, two per decade, enough to see where per-call overhead
    stops dominating and per-byte cost takes over.
    """
    if smallest < 1 or largest < smallest or factor < 2:
        raise ValueError(f"bad size range {smallest}..{largest} ×{factor}")
    sizes = []
    s = smallest
    while s <= largest:
        sizes.append(s)
        s *= factor
    if sizes[-1] != largest:
        sizes.append(largest)
    return sizes


def shuffled_rounds(contenders: Sequence[str], rounds: int, seed: int) -> list[list[str]]:
    """One independently shuffled order per round, so no contender always runs first (cold caches, turbo)."""
    rng = random.Random(seed)
    plan = []
    for _ in range(rounds):
        order = list(contenders)
        rng.shuffle(order)
        plan.append(order)
    return plan


def inner_iterations(size: int, target_bytes: int = 64 * MiB, cap: int = 2000) -> int:
    """How many transfers one sample repeats so that tiny sizes are not lost in timer and rusage granularity.

    64 MiB per sample keeps each sample ≥ ~10 ms on this machine; the cap bounds the per-call loop at 4 KiB.
    """
    return max(1, min(cap, target_bytes // max(1, size)))


# Counters where a later phase's value replaces the earlier one's instead of adding to it.
_LAST_WINS = {"dirty_kb_after"}
_FIRST_WINS = {"dirty_kb_before"}


def merge_counters(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Counters of two consecutive phases (e.g. work, then force) as one: sums, syscalls merged by name,
    Dirty before from the first phase and after from the last."""
    out: dict[str, Any] = {}
    for key, va in a.items():
        vb = b[key]
        if key in _FIRST_WINS:
            out[key] = va
        elif key in _LAST_WINS:
            out[key] = vb
        elif isinstance(va, dict):
            merged = dict(va)
            for name, n in vb.items():
                merged[name] = merged.get(name, 0) + n
            out[key] = merged
        else:
            out[key] = va + vb
    return out
