"""zcopy.diskrates and cp's choice of direct by what it achieves here: a measuring copy, the kept rates, and the
choice (and its sentence) following them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from direct_fs import write_uncached

from zcopy import diskrates, fastcopy, observe
from zcopy.routes import direct

MiB = 1 << 20


def _fds(a: Path, b: Path) -> tuple[int, int]:
    return os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)


def test_choose_follows_the_measurement() -> None:
    fast = direct.Measured(900 * MiB, 300 * MiB, 12, "copy_file_range")
    use, why = direct.choose(1 << 30, 0.0, measured=fast)
    assert use and "faster by direct here (direct 900 MiB/s against copy_file_range + fdatasync 300 MiB/s" in why
    use, why = direct.choose(1 << 30, 0.0, measured=direct.Measured(300 * MiB, 900 * MiB, 5))
    assert not use and "faster through the page cache here" in why and "measured 5 s ago" in why
    use, why = direct.choose(1 << 30, 0.0)
    assert use and "not measured on these file systems yet" in why
    # A measurement never overrides the page-cache facts: a warm source or a small one stays off direct.
    assert direct.choose(1 << 30, 0.9, measured=fast)[0] is False
    assert direct.choose(1 << 20, 0.0, measured=fast)[0] is False


def test_rates_are_kept_per_pair_of_file_systems_for_ttl(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    s, d = _fds(tmp_path / "a", tmp_path / "a")
    try:
        assert diskrates.lookup(s, d) is None
        now = time.time()
        diskrates.remember(s, d, diskrates.Rates(2e9, 1e9, now, "copy_file_range"))
        got = diskrates.lookup(s, d, now=now + 1)
        assert got is not None and (got.direct_bps, got.cache_bps, got.via) == (2e9, 1e9, "copy_file_range")
        assert diskrates.lookup(s, d, now=now + diskrates.TTL + 1) is None  # too old: measure again
        assert diskrates.should_measure(s, d, diskrates.MEASURE_MIN) is False  # a fresh measurement is kept
    finally:
        os.close(s)
        os.close(d)
    data = json.loads(Path(diskrates.cache_path()).read_text())
    assert list(data) == [diskrates.key(os.open(tmp_path / "a", os.O_RDONLY), os.open(tmp_path / "a", os.O_RDONLY))]


@pytest.mark.parametrize("junk", ["not json", "[1, 2]", '{"1:2>1:2": {"direct_bps": "fast"}}'])
def test_an_unreadable_cache_is_a_measurement_to_make_again(tmp_path: Path, junk: str) -> None:
    path = Path(diskrates.cache_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junk)
    (tmp_path / "a").write_bytes(b"x")
    s, d = _fds(tmp_path / "a", tmp_path / "a")
    try:
        assert diskrates.lookup(s, d) is None
        diskrates.remember(s, d, diskrates.Rates(1.0, 2.0, time.time()))  # and it is replaced, not a crash
        assert diskrates.lookup(s, d) is not None
    finally:
        os.close(s)
        os.close(d)


def test_a_measured_copy_is_identical_remembers_and_says_so(ddir: Path) -> None:
    data = write_uncached(ddir / "src", 5 * MiB)  # cold: written by O_DIRECT
    s = os.open(ddir / "src", os.O_RDONLY)
    d = os.open(ddir / "dst", os.O_RDWR | os.O_CREAT, 0o644)
    seen: list[tuple[int, int]] = []
    try:
        with observe() as obs:
            moved = diskrates.measured_copy(s, d, len(data), "src", lambda a, b: seen.append((a, b)), probe=MiB)
        rates = diskrates.lookup(s, d)
    finally:
        os.close(s)
        os.close(d)
    assert (ddir / "dst").read_bytes() == data
    assert moved.nbytes == len(data) and seen[-1] == (len(data), len(data))
    assert rates is not None and rates.direct_bps > 0 and rates.cache_bps > 0
    assert "measured on this copy: the first 1 MiB by direct" in (moved.reason or "")
    routes_used = [op.route for op in obs.operations]
    assert routes_used[0] == "direct" and routes_used[1] != "direct"  # each part is its own operation
    assert moved.route == routes_used[-1] and sum(op.nbytes for op in obs.operations) == len(data)


def test_cp_does_not_pick_direct_where_the_page_cache_was_measured_faster(ddir: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "THRESHOLD", MiB)
    data = write_uncached(ddir / "src", 2 * MiB)
    (ddir / "dst").write_bytes(b"")
    s, d = _fds(ddir / "src", ddir / "dst")
    try:
        diskrates.remember(s, d, diskrates.Rates(100 * MiB, 400 * MiB, time.time()))
    finally:
        os.close(s)
        os.close(d)
    moved = fastcopy.copy_result(ddir / "src", ddir / "dst")
    assert moved.route != "direct" and "faster through the page cache here" in (moved.reason or "")
    assert (ddir / "dst").read_bytes() == data
    os.unlink(ddir / "dst")  # the same pair of file systems measured faster by direct: direct
    (ddir / "dst").write_bytes(b"")
    s, d = _fds(ddir / "src", ddir / "dst")
    try:
        diskrates.remember(s, d, diskrates.Rates(400 * MiB, 100 * MiB, time.time()))
    finally:
        os.close(s)
        os.close(d)
    write_uncached(ddir / "src", 2 * MiB)
    moved = fastcopy.copy_result(ddir / "src", ddir / "dst")
    assert moved.route == "direct" and "faster by direct here" in (moved.reason or "")


def test_explain_to_file_gives_the_measured_reason(ddir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zcopy.lab.explain import explain

    monkeypatch.setattr(direct, "THRESHOLD", MiB)
    write_uncached(ddir / "src", 2 * MiB)
    s, d = _fds(ddir / "src", ddir / "src")  # explain's target is a temp file beside the source: same file system
    try:
        diskrates.remember(s, d, diskrates.Rates(100 * MiB, 400 * MiB, time.time()))
    finally:
        os.close(s)
        os.close(d)
    out = explain(ddir / "src", "file")
    assert out["selection"]["preferred"] is None
    assert "faster through the page cache here" in out["selection"]["reason"]
