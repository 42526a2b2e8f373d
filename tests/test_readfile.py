"""zcopy.read_file, zcopy.aligned_buffer, the page-cache probe and the direct route's selection."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_file
from direct_fs import dio_offset, tmpfs_dir, write_uncached

import zcopy
from zcopy import RouteUnavailable, observe, pagecache
from zcopy.aligned import address_of, aligned_buffer, dio_alignment, is_aligned
from zcopy.fastcopy import select
from zcopy.routes import direct

MiB = 1 << 20


@pytest.mark.parametrize("size", [0, 1, 5, 4096, 4097, 3 * MiB + 1])
def test_aligned_buffer(size: int) -> None:
    buf = aligned_buffer(size)
    assert len(buf) == size and not buf.readonly
    if size:
        assert address_of(buf) % mmap.PAGESIZE == 0
        buf[-1] = 7
        assert buf[-1] == 7 and buf[0] in (0, 7)
    with pytest.raises(ValueError):
        aligned_buffer(-1)


def test_dio_alignment_is_a_power_of_two(ddir: Path) -> None:
    (ddir / "f").write_bytes(b"x")
    fd = os.open(ddir / "f", os.O_RDONLY)
    try:
        need = dio_alignment(fd)
    finally:
        os.close(fd)
    assert need.offset > 0 and need.offset & (need.offset - 1) == 0
    assert need.source in ("statx", "block device", "fallback")


@pytest.mark.parametrize("size", [0, 1, 511, 4095, 4096, 4097, MiB - 1, MiB + 1, 9 * MiB + 5])
def test_read_file_into_new_memory(ddir: Path, size: int) -> None:
    data = make_file(ddir / "f", size, seed=size)
    with observe() as obs:
        got = zcopy.read_file(ddir / "f", direct=True if size else None)
    assert bytes(got) == data
    if size:
        assert address_of(got) % mmap.PAGESIZE == 0
        op = obs.operations[0]
        assert (op.op, op.route, op.user_bytes) == ("read_file", "direct", 0)  # DMA only, whole blocks


@pytest.mark.parametrize("extra", [0, 4096])
def test_read_file_into_a_reused_buffer(ddir: Path, extra: int) -> None:
    size = 2 * MiB + 100
    data = make_file(ddir / "f", size)
    buf = aligned_buffer(size + extra)
    with observe() as obs:
        got = zcopy.read_file(ddir / "f", into=buf, direct=True)
    assert bytes(got) == data and got.obj is buf.obj
    a = dio_offset(ddir / "f")
    # With room for the whole last block it is read by DMA too; else the tail goes through the page cache.
    assert obs.operations[0].user_bytes == (0 if extra else size % a)


def test_read_file_unaligned_into(ddir: Path) -> None:
    data = make_file(ddir / "f", 10000)
    buf = aligned_buffer(20000)[1:]  # one byte off the page boundary
    assert not is_aligned(buf, 2)
    with pytest.raises(RouteUnavailable, match="not aligned"):
        zcopy.read_file(ddir / "f", into=buf, direct=True)
    with observe() as obs:
        assert bytes(zcopy.read_file(ddir / "f", into=buf)) == data
    op = obs.operations[0]
    assert op.route == "readwrite" and "not aligned" in op.skipped[0][1]
    assert bytes(zcopy.read_file(ddir / "f", into=bytearray(10000), direct=False)) == data


def test_read_file_errors(ddir: Path) -> None:
    make_file(ddir / "f", 100)
    with pytest.raises(ValueError, match="holds 99 bytes"):
        zcopy.read_file(ddir / "f", into=bytearray(99))
    with pytest.raises(TypeError):
        zcopy.read_file(ddir / "f", into=memoryview(b"x" * 200))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        zcopy.read_file(ddir / "missing")


def test_read_file_refuses_a_fifo_or_a_directory_without_blocking(tmp_path: Path) -> None:
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    raised: list[BaseException] = []

    def read() -> None:
        try:
            zcopy.read_file(fifo)
        except BaseException as exc:  # handed to the test thread
            raised.append(exc)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # blocked in open(): release it with a writer, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
        pytest.fail("read_file blocked on a FIFO with no writer")
    assert len(raised) == 1 and isinstance(raised[0], zcopy.NotRegularFileError), raised
    assert "not a regular file (a FIFO)" in str(raised[0])
    with pytest.raises(IsADirectoryError):
        zcopy.read_file(tmp_path)


def test_read_file_cached_goes_through_the_cache(ddir: Path) -> None:
    data = make_file(ddir / "f", 4 * MiB)
    (ddir / "f").read_bytes()  # every page resident now (just read)
    with observe() as obs:
        assert bytes(zcopy.read_file(ddir / "f")) == data
    op = obs.operations[0]
    assert op.route == "readwrite" and "in the page cache" in op.skipped[0][1]


def _refuse_direct_reads(monkeypatch: pytest.MonkeyPatch, after: int = 0) -> None:
    """A file system that takes the O_DIRECT flag and then refuses the reads (some FUSE mounts): preadv on an
    O_DIRECT fd fails with EINVAL once `after` reads have succeeded."""
    import errno
    import fcntl

    from zcopy import readfile

    real = os.preadv
    done = [0]

    def preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            if done[0] >= after:
                raise OSError(errno.EINVAL, "Invalid argument")
            done[0] += 1
        return real(fd, buffers, offset)

    monkeypatch.setattr(readfile.os, "preadv", preadv)


def test_read_file_falls_back_when_the_file_system_refuses_the_first_direct_read(
    ddir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_uncached(ddir / "f", 4 * MiB)
    _refuse_direct_reads(monkeypatch)
    with observe() as obs:
        assert bytes(zcopy.read_file(ddir / "f")) == data
    op = obs.operations[0]
    assert op.route == "readwrite"
    assert op.skipped == [("direct", "EINVAL on the first O_DIRECT read: the file system refuses it")]
    with pytest.raises(RouteUnavailable, match="EINVAL on the first O_DIRECT read"):
        zcopy.read_file(ddir / "f", direct=True)


def test_read_file_never_falls_back_after_bytes_were_read(ddir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_uncached(ddir / "f", 4 * MiB)
    _refuse_direct_reads(monkeypatch, after=1)
    monkeypatch.setattr("zcopy.readfile._MAX_READ", 1 * MiB)  # several reads, so the second one fails
    with pytest.raises(OSError, match="Invalid argument"):
        zcopy.read_file(ddir / "f")


def test_read_file_procfs() -> None:
    got = bytes(zcopy.read_file("/proc/self/status"))
    assert got.startswith(b"Name:")


def test_residency_probe(ddir: Path) -> None:
    make_file(ddir / "f", 2 * MiB)
    with open(ddir / "f", "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        # Every page faulted in and mapped while it is probed: resident, so a probe saying 0 fails here.
        assert sum(m[i] for i in range(0, len(m), mmap.PAGESIZE)) >= 0
        res = pagecache.residency(f.fileno())
    assert res.probed == 2 * MiB // mmap.PAGESIZE and res.resident is not None
    assert res.probed // 2 <= res.resident <= res.probed  # margin: the kernel may still drop a few unmapped ones
    empty = ddir / "e"
    empty.write_bytes(b"")
    fd = os.open(empty, os.O_RDONLY)
    try:
        assert pagecache.residency(fd).fraction == 0.0
    finally:
        os.close(fd)


def test_residency_of_a_tmpfs_file_is_complete() -> None:
    with tmpfs_dir() as d:
        make_file(d / "f", direct.THRESHOLD + 1)
        fd = os.open(d / "f", os.O_RDONLY)
        try:
            assert pagecache.residency(fd).fraction == 1.0
            # So a whole-file copy there never prefers direct.
            assert select(fd, direct.THRESHOLD + 1)[0] is None
        finally:
            os.close(fd)


def test_choose_is_pure() -> None:
    assert direct.choose(direct.THRESHOLD - 1, 0.0)[0] is False
    assert "below the direct threshold" in direct.choose(10, 0.0)[1]
    assert direct.choose(direct.THRESHOLD, None) == (False, direct.choose(direct.THRESHOLD, None)[1])
    use, why = direct.choose(1 << 30, 0.0)
    assert use and "0% of it is in the page cache" in why
    use, why = direct.choose(1 << 30, 0.9)
    assert not use and "90%" in why
    assert direct.choose(1 << 30, direct.CACHED_FRACTION)[0] is False


def test_cp_route_direct_json(ddir: Path) -> None:
    data = make_file(ddir / "src", 3 * MiB + 7)
    zcopy_exe = os.path.join(os.path.dirname(sys.executable), "zcopy")
    r = subprocess.run([zcopy_exe, "cp", "--json", "--route", "direct", str(ddir / "src"), str(ddir / "dst")],
                       capture_output=True, text=True, check=True)  # fmt: skip
    doc = json.loads(r.stdout)
    assert doc["route"] == "direct" and doc["bytes"] == len(data)
    assert (ddir / "dst").read_bytes() == data
    # Not forced, small: copy_file_range, and the selection says why.
    r = subprocess.run([zcopy_exe, "cp", "--json", str(ddir / "src"), str(ddir / "dst2")],
                       capture_output=True, text=True, check=True)  # fmt: skip
    doc = json.loads(r.stdout)
    assert doc["route"] == "copy_file_range" and "below the direct threshold" in doc["why"]


def test_cp_chooses_direct_for_a_large_cold_source(ddir: Path) -> None:
    data = write_uncached(ddir / "cold", direct.THRESHOLD)  # by O_DIRECT: not in the page cache
    zcopy_exe = os.path.join(os.path.dirname(sys.executable), "zcopy")
    r = subprocess.run([zcopy_exe, "cp", "--json", str(ddir / "cold"), str(ddir / "copy")],
                       capture_output=True, text=True, check=True)  # fmt: skip
    doc = json.loads(r.stdout)
    assert doc["route"] == "direct" and "0% of it is in the page cache" in doc["why"]
    assert (ddir / "copy").read_bytes() == data
    (ddir / "cold").read_bytes()
    # Now cached (just read): the same copy goes by copy_file_range and says why.
    r = subprocess.run([zcopy_exe, "cp", str(ddir / "cold"), str(ddir / "copy2")],
                       capture_output=True, text=True, check=True)  # fmt: skip
    assert "copied by copy_file_range" in r.stdout and "in the page cache" in r.stdout
