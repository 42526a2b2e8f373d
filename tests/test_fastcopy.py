"""zcopy.copy: whole-file copy by the best route, metadata on request (destinations: test_dest.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import make_file

from zcopy import RouteUnavailable, copy, observe
from zcopy.fastcopy import copy_result


def test_copy_bytes_by_copy_file_range(tmp_path: Path) -> None:
    data = make_file(tmp_path / "a", 5_000_000)
    with observe() as obs:
        n = copy(tmp_path / "a", tmp_path / "b")
    assert n == len(data) and (tmp_path / "b").read_bytes() == data
    assert obs.operations[0].op == "copy" and obs.operations[0].route == "copy_file_range"


def test_copy_into_directory_and_over_existing(tmp_path: Path) -> None:
    make_file(tmp_path / "a", 1000)
    (tmp_path / "d").mkdir()
    copy(tmp_path / "a", tmp_path / "d")
    assert (tmp_path / "d" / "a").read_bytes() == (tmp_path / "a").read_bytes()
    (tmp_path / "c").write_bytes(b"old content that is longer than nothing" * 100)
    copy(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_bytes() == (tmp_path / "a").read_bytes()


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"")
    assert copy(tmp_path / "a", tmp_path / "b") == 0
    assert (tmp_path / "b").read_bytes() == b""


def test_metadata_only_when_asked(tmp_path: Path) -> None:
    make_file(tmp_path / "a", 100)
    os.chmod(tmp_path / "a", 0o741)
    os.utime(tmp_path / "a", ns=(1_000_000_000, 2_000_000_123))
    copy(tmp_path / "a", tmp_path / "plain")
    copy(tmp_path / "a", tmp_path / "meta", metadata=True)
    st_plain, st_meta = os.stat(tmp_path / "plain"), os.stat(tmp_path / "meta")
    assert st_meta.st_mode & 0o7777 == 0o741 and st_meta.st_mtime_ns == 2_000_000_123
    assert st_plain.st_mtime_ns != 2_000_000_123
    umask = os.umask(0)
    os.umask(umask)
    assert st_plain.st_mode & 0o777 == 0o741 & ~umask  # a new file: the source's bits minus the umask, as cp


@pytest.mark.parametrize("route", ["copy_file_range", "sendfile", "splice", "mmap", "readwrite"])
def test_every_route_copies(tmp_path: Path, route: str) -> None:
    data = make_file(tmp_path / "a", 3_000_001)
    m = copy_result(tmp_path / "a", tmp_path / "b", route=route)
    assert m.route == route and (tmp_path / "b").read_bytes() == data


def test_procfs_source(tmp_path: Path) -> None:
    m = copy_result("/proc/self/status", tmp_path / "s")
    assert m.nbytes > 0 and m.route == "readwrite"
    assert b"Name:" in (tmp_path / "s").read_bytes()


def test_forced_impossible_route(tmp_path: Path) -> None:
    with pytest.raises(RouteUnavailable):
        copy("/proc/self/status", tmp_path / "x", route="copy_file_range")
    assert not (tmp_path / "x").exists()


def test_same_file_refused(tmp_path: Path) -> None:
    make_file(tmp_path / "a", 10)
    with pytest.raises(shutil.SameFileError):
        copy(tmp_path / "a", tmp_path / "a")
    assert (tmp_path / "a").stat().st_size == 10


def test_progress_callback_in_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zcopy.fastcopy as fc

    monkeypatch.setattr(fc, "PROGRESS_STEP", 1 << 20)
    data = make_file(tmp_path / "a", (5 << 20) + 7)
    seen: list[tuple[int, int]] = []
    m = copy_result(tmp_path / "a", tmp_path / "b", progress=lambda d, t: seen.append((d, t)))
    assert m.nbytes == len(data) and (tmp_path / "b").read_bytes() == data
    assert seen[-1] == (len(data), len(data)) and len(seen) == 6
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_sparse_file_keeps_its_holes(tmp_path: Path) -> None:
    with open(tmp_path / "a", "wb") as f:
        f.seek(2 << 20)
        f.write(b"data in the middle")
        f.truncate(6 << 20)
    m = copy_result(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == (tmp_path / "a").read_bytes() and m.nbytes == 6 << 20
    assert os.stat(tmp_path / "b").st_blocks * 512 < 1 << 20 and "holes kept" in (m.reason or "")
    with open(tmp_path / "c", "wb") as f:  # all hole
        f.truncate(1 << 20)
    assert copy(tmp_path / "c", tmp_path / "d") == 1 << 20 and os.stat(tmp_path / "d").st_blocks == 0
