"""zcopy.diskrates and cp's choice of direct by what it achieves here: rates from whole copies, kept per pair of
file systems, the page cache explored once direct is known, and the choice (and its sentence) following them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from direct_fs import write_uncached

from zcopy import diskrates, fastcopy
from zcopy.routes import direct

MiB = 1 << 20


def _pair(a: Path, b: Path) -> tuple[int, int]:
    return os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)


def _remember(a: Path, b: Path, **rates: float) -> None:
    s, d = _pair(a, b)
    try:
        for route, bps in rates.items():
            diskrates.record(s, d, route, bps)
    finally:
        os.close(s)
        os.close(d)


def _lookup(a: Path, b: Path) -> diskrates.Rates:
    s, d = _pair(a, b)
    try:
        return diskrates.lookup(s, d)
    finally:
        os.close(s)
        os.close(d)


def test_choose_follows_the_measurement() -> None:
    fast = direct.Measured(900 * MiB, 300 * MiB, 12, 40, "copy_file_range")
    use, why = direct.choose(1 << 30, 0.0, measured=fast)
    assert use and "faster by direct here (direct 900 MiB/s, measured 12 s ago, copy_file_range + fdatasync 300" in why
    use, why = direct.choose(1 << 30, 0.0, measured=direct.Measured(300 * MiB, 900 * MiB, 5, 6))
    assert not use and "faster through the page cache here" in why and "measured 6 s ago" in why
    assert direct.choose(1 << 30, 0.0) == (True, direct.choose(1 << 30, 0.0)[1])
    assert "not measured here yet" in direct.choose(1 << 30, 0.0)[1]
    assert "measuring it on this copy" in direct.choose(1 << 30, 0.0, explore=True)[1]
    # Direct known, the page cache not: a large copy explores it, a smaller one stays on direct.
    only_direct = direct.Measured(500 * MiB, None, 3)
    use, why = direct.choose(1 << 30, 0.0, measured=only_direct, explore=True)
    assert not use and "this copy measures it (copy_file_range + fdatasync)" in why
    assert direct.choose(1 << 30, 0.0, measured=only_direct)[0] is True
    # A measurement never overrides the page-cache facts: a warm source or a small one stays off direct.
    assert direct.choose(1 << 30, 0.9, measured=fast)[0] is False
    assert direct.choose(1 << 20, 0.0, measured=fast)[0] is False


def test_rates_are_kept_per_pair_of_file_systems_for_ttl(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    assert _lookup(tmp_path / "a", tmp_path / "a").direct_bps is None
    s, d = _pair(tmp_path / "a", tmp_path / "a")
    try:
        now = time.time()
        diskrates.record(s, d, "direct", 2e9, now=now)
        diskrates.record(s, d, "copy_file_range", 1e9, now=now - 10)
        got = diskrates.lookup(s, d, now=now + 1)
        assert (got.direct_bps, got.cache_bps, got.via) == (2e9, 1e9, "copy_file_range")
        old = diskrates.lookup(s, d, now=now + diskrates.TTL - 5)  # the page cache's rate is older: it expires first
        assert old.direct_bps == 2e9 and old.cache_bps is None
        key = diskrates.key(s, d)
    finally:
        os.close(s)
        os.close(d)
    assert list(json.loads(Path(diskrates.cache_path()).read_text())) == [key]


@pytest.mark.parametrize("junk", ["not json", "[1, 2]", '{"1:2>1:2": {"direct_bps": "fast"}}'])
def test_an_unreadable_cache_is_a_measurement_to_make_again(tmp_path: Path, junk: str) -> None:
    path = Path(diskrates.cache_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junk)
    (tmp_path / "a").write_bytes(b"x")
    assert _lookup(tmp_path / "a", tmp_path / "a").direct_bps is None
    _remember(tmp_path / "a", tmp_path / "a", direct=1.0)  # and it is replaced, not a crash
    assert _lookup(tmp_path / "a", tmp_path / "a").direct_bps == 1.0


def test_whole_copies_measure_direct_then_the_page_cache_then_choose(ddir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "THRESHOLD", MiB)
    monkeypatch.setattr(diskrates, "MEASURE_MIN", 2 * MiB)
    data = write_uncached(ddir / "src", 3 * MiB)  # cold: written by O_DIRECT
    first = fastcopy.copy_result(ddir / "src", ddir / "dst")
    assert first.route == "direct" and "measuring it on this copy" in (first.reason or "")
    rates = _lookup(ddir / "src", ddir / "dst")
    assert rates.direct_bps is not None and rates.cache_bps is None
    write_uncached(ddir / "src", 3 * MiB)
    second = fastcopy.copy_result(ddir / "src", ddir / "dst2")
    assert second.route != "direct" and "this copy measures it" in (second.reason or "")
    rates = _lookup(ddir / "src", ddir / "dst")
    assert rates.cache_bps is not None and rates.via == second.route
    write_uncached(ddir / "src", 3 * MiB)
    third = fastcopy.copy_result(ddir / "src", ddir / "dst3")
    faster = "direct" if rates.direct_bps >= rates.cache_bps else second.route  # type: ignore[operator]
    assert third.route == faster and "durable cold copies are faster" in (third.reason or "")
    for name in ("dst", "dst2", "dst3"):
        assert (ddir / name).read_bytes() == data


def test_cp_does_not_pick_direct_where_the_page_cache_was_measured_faster(ddir: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "THRESHOLD", MiB)
    data = write_uncached(ddir / "src", 2 * MiB)
    (ddir / "dst").write_bytes(b"")
    _remember(ddir / "src", ddir / "dst", direct=100 * MiB, copy_file_range=400 * MiB)
    moved = fastcopy.copy_result(ddir / "src", ddir / "dst")
    assert moved.route != "direct" and "faster through the page cache here" in (moved.reason or "")
    assert (ddir / "dst").read_bytes() == data
    _remember(ddir / "src", ddir / "dst", direct=400 * MiB, copy_file_range=100 * MiB)
    write_uncached(ddir / "src", 2 * MiB)
    moved = fastcopy.copy_result(ddir / "src", ddir / "dst")
    assert moved.route == "direct" and "faster by direct here" in (moved.reason or "")


def test_cp_json_and_explain_give_the_measured_reason(ddir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    from zcopy.lab.explain import explain

    monkeypatch.setattr(direct, "THRESHOLD", MiB)
    write_uncached(ddir / "src", 40 * MiB)  # above the real 32 MiB threshold, for the CLI in its own process
    (ddir / "dst").write_bytes(b"")
    _remember(ddir / "src", ddir / "src", direct=100 * MiB, copy_file_range=400 * MiB)
    out = explain(ddir / "src", "file")  # its target is a temp file beside the source: the same file systems
    assert out["selection"]["preferred"] is None
    assert "faster through the page cache here" in out["selection"]["reason"]
    write_uncached(ddir / "src", 40 * MiB)  # explain read it: cold again
    doc = subprocess.run([sys.executable, "-m", "zcopy", "cp", "--json", str(ddir / "src"), str(ddir / "dst")],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    got = json.loads(doc)
    assert got["route"] != "direct" and "faster through the page cache here" in got["why"]
