from __future__ import annotations

import itertools

import pytest

from zcopy.lab.stats import (
    GiB,
    KiB,
    MiB,
    inner_iterations,
    log_sizes,
    merge_counters,
    parse_size,
    shuffled_rounds,
    summarize,
)


def test_summarize_median_min_max() -> None:
    s = summarize([3.0, 1.0, 10.0])
    assert (s.median, s.min, s.max, s.n) == (3.0, 1.0, 10.0, 3)
    assert summarize([1.0, 2.0, 3.0, 4.0]).median == 2.5
    with pytest.raises(ValueError):
        summarize([])


@pytest.mark.parametrize(
    ("text", "value"),
    [("4096", 4096), ("4K", 4 * KiB), ("4KiB", 4 * KiB), ("256M", 256 * MiB), ("1g", GiB), ("1.5K", 1536)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "4X", "-1", "0", "0.3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_log_sizes_default_grid_is_4k_to_1g() -> None:
    sizes = log_sizes(4 * KiB, GiB)
    assert sizes[0] == 4 * KiB and sizes[-1] == GiB and len(sizes) == 10
    assert all(b == 4 * a for a, b in itertools.pairwise(sizes))


def test_log_sizes_appends_off_grid_top() -> None:
    assert log_sizes(4, 100, 4) == [4, 16, 64, 100]
    with pytest.raises(ValueError):
        log_sizes(10, 5)


def test_shuffled_rounds_are_permutations_and_vary() -> None:
    names = ["a", "b", "c", "d", "e"]
    plan = shuffled_rounds(names, 20, seed=1)
    assert all(sorted(r) == names for r in plan)
    assert len({tuple(r) for r in plan}) > 1  # not the same order every round
    assert shuffled_rounds(names, 3, seed=7) == shuffled_rounds(names, 3, seed=7)  # reproducible


def test_inner_iterations_bounds() -> None:
    assert inner_iterations(GiB) == 1
    assert inner_iterations(MiB, 64 * MiB) == 64
    assert inner_iterations(1, 64 * MiB, cap=2000) == 2000


def test_merge_counters_sums_and_keeps_dirty_ends() -> None:
    a = {"wall_s": 1.0, "syscalls": {"read": 2}, "user_bytes": 10, "dirty_kb_before": 100, "dirty_kb_after": 500}
    b = {"wall_s": 0.5, "syscalls": {"read": 1, "fsync": 1}, "user_bytes": 0, "dirty_kb_before": 500,
         "dirty_kb_after": 50}  # fmt: skip
    m = merge_counters(a, b)
    assert m == {"wall_s": 1.5, "syscalls": {"read": 3, "fsync": 1}, "user_bytes": 10, "dirty_kb_before": 100,
                 "dirty_kb_after": 50}  # fmt: skip
    assert a["syscalls"] == {"read": 2}  # inputs untouched
