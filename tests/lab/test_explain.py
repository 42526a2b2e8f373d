"""explain: one real transfer of a real file to a socket, a file and a pipe, with reasons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zcopy.cli import main
from zcopy.errors import RouteUnavailable
from zcopy.lab.explain import explain
from zcopy.lab.render import route_verdicts


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "data.bin"
    p.write_bytes(os.urandom(3 << 20))
    return p


def test_to_socket_uses_sendfile_without_user_space(src: Path) -> None:
    d = explain(src, "socket")
    assert (d["route"], d["src_kind"], d["dst_kind"], d["nbytes"]) == ("sendfile", "file", "socket", 3 << 20)
    assert d["counters"]["user_bytes"] == 0 and d["model"]["cpu_copies"] == 0
    verdicts = {r: v for r, v, _ in route_verdicts(d)}
    assert verdicts["sendfile"] == "USED" and verdicts["copy_file_range"] == "cannot"


def test_to_file_and_pipe(src: Path) -> None:
    f = explain(src, "file")
    assert f["route"] == "copy_file_range" and f["nbytes"] == 3 << 20
    assert not list(src.parent.glob(".zcopy-explain-*"))  # the temp copy is gone
    p = explain(src, "pipe")
    assert p["dst_kind"] == "pipe" and p["nbytes"] == 3 << 20 and p["route"] == p["order"][0]


def test_forced_route_is_used_and_counted(src: Path) -> None:
    d = explain(src, "socket", route="readwrite")
    assert d["route"] == "readwrite" and d["counters"]["user_bytes"] == 2 * (3 << 20)
    with pytest.raises(RouteUnavailable):
        explain(src, "socket", route="copy_file_range")


def test_other_filesystem_shows_exdev(src: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(src).st_dev:
        pytest.skip("needs /dev/shm on a different filesystem than the temp dir")
    d = explain(src, "file", dest_dir=shm)
    reasons = dict((r, why) for r, why in d["skipped"])
    assert reasons["copy_file_range"].startswith("EXDEV")
    assert d["route"] != "copy_file_range"


def test_cli(src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(src), "--to", "socket"]) == 0
    out = capsys.readouterr().out
    assert "route     sendfile" in out and "why this route" in out and "crossed user space 0 B" in out
    assert main(["explain", str(src), "--to", "socket", "--route", "copy_file_range"]) == 2
    assert "copy_file_range" in capsys.readouterr().err
    assert main(["explain", str(src.parent / "missing"), "--to", "file"]) == 2


def test_to_file_explains_direct_or_copy_file_range(tmp_path: Path) -> None:
    from direct_fs import disk_dir, write_uncached

    from zcopy.routes import direct

    with disk_dir(tmp_path) as d:
        cold = d / "cold.bin"
        write_uncached(cold, direct.THRESHOLD)  # written by O_DIRECT: none of it is in the page cache
        doc = explain(cold, "file")
        assert doc["route"] == "direct" and doc["order"][0] == "direct"
        assert "0% of it is in the page cache" in doc["selection"]["reason"]
        verdicts = {r: (v, why) for r, v, why in route_verdicts(doc)}
        assert verdicts["direct"][0] == "USED" and verdicts["direct"][1].startswith("chosen: ")
        assert doc["model"]["cpu_copies"] == 0 and doc["model"]["dma_copies"] == 2
        cold.read_bytes()  # now cached: copy_file_range, and the direct row says why not
        doc = explain(cold, "file")
        assert doc["route"] == "copy_file_range"
        v, why = {r: (v, why) for r, v, why in route_verdicts(doc)}["direct"]
        assert v == "not chosen" and "in the page cache" in why
        assert explain(cold, "file", route="direct")["route"] == "direct"
