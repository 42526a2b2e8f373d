"""Tests for zcopy.mapped: real files in tmp_path, real mappings, syscall faults injected by patching os."""

from __future__ import annotations

import errno
import json
import mmap
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zcopy._sys import PAGE_SIZE
from zcopy.errors import ClosedChannelError, NonReadableChannelError, NonWritableChannelError
from zcopy.mapped import MapMode, MappedBuffer, map_file, page_span

GRAN = mmap.ALLOCATIONGRANULARITY


@pytest.fixture
def data() -> bytes:
    # Not a repeating pattern shorter than a page, so an off-by-a-page view would compare unequal.
    return bytes((i * 7 + i // 251) % 256 for i in range(4 * PAGE_SIZE + 123))


@pytest.fixture
def rw_fd(tmp_path: Path, data: bytes) -> Iterator[int]:
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDWR)
    yield fd
    os.close(fd)


# --- page_span: pure arithmetic ---
@pytest.mark.parametrize(
    ("offset", "size", "limit", "expected"),
    [
        (0, None, 10000, (0, 10000)),
        (0, 0, 10000, (0, 0)),
        (4096, 10, 10000, (4096, 10)),
        (4196, 10, 10000, (4096, 110)),
        (8191, 1, 10000, (4096, 4096)),
        (5000, None, 10000, (4096, 5904)),
        (10000, None, 10000, (8192, 1808)),
    ],
)
def test_page_span(offset: int, size: int | None, limit: int, expected: tuple[int, int]) -> None:
    assert page_span(offset, size, limit, page=4096) == expected


@pytest.mark.parametrize(("offset", "size"), [(-1, None), (10001, None), (0, 10001), (9999, 2), (5, -1)])
def test_page_span_rejects_out_of_range(offset: int, size: int | None) -> None:
    with pytest.raises(ValueError, match="mapping of 10000 bytes"):
        page_span(offset, size, 10000, page=4096)


# --- modes ---
def test_read_only_maps_the_file_and_refuses_writes(rw_fd: int, data: bytes) -> None:
    with map_file(rw_fd, MapMode.READ_ONLY) as m:
        assert isinstance(m, MappedBuffer) and isinstance(m, mmap.mmap)
        assert m.mode is MapMode.READ_ONLY and m.position == 0
        assert len(m) == len(data)
        assert m[:] == data
        with pytest.raises(TypeError):
            m[0] = 1


def test_read_write_changes_reach_the_file(rw_fd: int, data: bytes) -> None:
    with map_file(rw_fd, MapMode.READ_WRITE) as m:
        m[10:15] = b"HELLO"
        m[-1] = 0x41
        m.force()
        assert os.pread(rw_fd, 5, 10) == b"HELLO"
        assert os.pread(rw_fd, 1, len(data) - 1) == b"A"
    assert os.pread(rw_fd, 10, 0) == data[:10]


def test_private_changes_stay_in_the_mapping(rw_fd: int, data: bytes) -> None:
    with map_file(rw_fd, MapMode.PRIVATE) as m:
        m[10:15] = b"HELLO"
        m.force()  # a no-op for copy-on-write: nothing may reach the file
        assert m[10:15] == b"HELLO"
        assert os.pread(rw_fd, 5, 10) == data[10:15]
    assert os.pread(rw_fd, len(data), 0) == data


def test_private_works_on_a_read_only_fd(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "ro.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        with map_file(fd, MapMode.PRIVATE) as m:
            m[0:3] = b"xyz"
            assert m[0:3] == b"xyz"
        with pytest.raises(NonWritableChannelError, match="read-only"):
            map_file(fd, MapMode.READ_WRITE)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_write_only_fd_cannot_be_mapped(tmp_path: Path) -> None:
    path = tmp_path / "wo.bin"
    path.write_bytes(b"x" * 100)
    fd = os.open(path, os.O_WRONLY)
    try:
        with pytest.raises(NonReadableChannelError, match="write-only"):
            map_file(fd, MapMode.READ_WRITE)
    finally:
        os.close(fd)


def test_mode_must_be_a_mapmode(rw_fd: int) -> None:
    with pytest.raises(TypeError, match="MapMode"):
        map_file(rw_fd, "r")  # type: ignore[arg-type]


# --- buffer protocol, slicing, find ---
def test_memoryview_and_view_cover_exactly_the_region(rw_fd: int, data: bytes) -> None:
    with map_file(rw_fd, MapMode.READ_WRITE, position=GRAN, size=2 * PAGE_SIZE) as m:
        with memoryview(m) as mv:
            assert mv.nbytes == 2 * PAGE_SIZE
            assert mv.tobytes() == data[GRAN : GRAN + 2 * PAGE_SIZE]
            mv[0:2] = b"ZZ"  # writable views write through
        with m.view() as v:
            assert v.nbytes == len(m) and v[0:2].tobytes() == b"ZZ"
        m.force(0, 2)
    assert os.pread(rw_fd, 2, GRAN) == b"ZZ"


def test_read_only_memoryview_is_read_only(rw_fd: int) -> None:
    with map_file(rw_fd, MapMode.READ_ONLY) as m, m.view() as v:
        assert v.readonly


def test_slicing_and_find(rw_fd: int) -> None:
    with map_file(rw_fd, MapMode.READ_WRITE) as m:
        m[3000:3006] = b"needle"
        m[9000:9006] = b"needle"
        assert m.find(b"needle") == 3000
        assert m.find(b"needle", 3001) == 9000
        assert m.find(b"needle", 3001, 9005) == -1
        assert m.rfind(b"needle") == 9000
        assert m[3000:3006:2] == b"nel"
        assert m[3000] == ord("n")
        assert m[-len(m)] == m[0]


# --- force / load / advise ---
def test_force_range_checks(rw_fd: int, data: bytes) -> None:
    with map_file(rw_fd, MapMode.READ_WRITE) as m:
        m.force(len(m))  # empty range at the end: fine
        m.force(PAGE_SIZE + 1, 0)
        with pytest.raises(ValueError):
            m.force(0, len(m) + 1)
        with pytest.raises(ValueError):
            m.force(-1)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_force_msyncs_only_the_page_aligned_range(tmp_path: Path) -> None:
    # strace shows the real msync(2) arguments: the sub-range force must not flush the whole mapping.
    path = tmp_path / "s.bin"
    path.write_bytes(b"\0" * (16 * PAGE_SIZE))
    script = textwrap.dedent(
        f"""
        import os
        from zcopy.mapped import MapMode, map_file
        fd = os.open({str(path)!r}, os.O_RDWR)
        with map_file(fd, MapMode.READ_WRITE) as m:
            m[{PAGE_SIZE} + 100] = 1
            m.force({PAGE_SIZE} + 100, 10)
            m.force()
        """
    )
    out = subprocess.run(
        ["strace", "-f", "-e", "trace=msync", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    calls = [line for line in out.splitlines() if "msync(" in line]
    lengths = [int(line.split(",")[1]) for line in calls]
    assert lengths == [110, 16 * PAGE_SIZE], out


def _rss_kib(path: Path) -> int:
    # Resident KiB of this process's mappings of `path`, from /proc/self/smaps (VMA headers name the file).
    rss, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip("\n").endswith(" " + str(path))
            elif inside and first == "Rss:":
                rss += int(line.split()[1])
    return rss


def test_load_populates_the_mapping(tmp_path: Path) -> None:
    size = 8 << 20  # 8 MiB: large enough that "resident" cannot happen by fault-around of one touch
    path = tmp_path / "l.bin"
    path.write_bytes(os.urandom(size))
    fd = os.open(path, os.O_RDONLY)
    try:
        with map_file(fd, MapMode.READ_ONLY) as m:
            assert _rss_kib(path) == 0  # a fresh mapping has no pages mapped in yet
            m.load()
            assert _rss_kib(path) == size // 1024
    finally:
        os.close(fd)


def test_load_falls_back_to_touching_when_populate_is_missing(
    tmp_path: Path, rw_fd: int, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.bin"
    # Kernels before 5.14 answer EINVAL to MADV_POPULATE_READ; an unknown advice value gives the same answer.
    import zcopy.mapped as mapped

    monkeypatch.setattr(mapped, "MADV_POPULATE_READ", 0x7FFF)
    with map_file(rw_fd, MapMode.READ_ONLY) as m:
        assert _rss_kib(path) == 0
        m.load()
        assert _rss_kib(path) * 1024 >= len(data)


def test_advise(rw_fd: int) -> None:
    with map_file(rw_fd, MapMode.READ_ONLY) as m:
        m.advise(mmap.MADV_SEQUENTIAL)
        m.advise(mmap.MADV_WILLNEED, PAGE_SIZE + 7, 100)  # unaligned start is aligned down, not EINVAL
        m.madvise(mmap.MADV_RANDOM, 0, PAGE_SIZE)
        with pytest.raises(ValueError):
            m.advise(mmap.MADV_NORMAL, 0, len(m) + 1)
        with pytest.raises(OSError) as e:
            m.advise(0x7FFF)
        assert e.value.errno == errno.EINVAL


# --- close ---
def test_use_after_close_is_closed_channel_error(rw_fd: int) -> None:
    m = map_file(rw_fd, MapMode.READ_WRITE)
    m.close()
    m.close()  # idempotent
    assert m.closed
    uses: list[Callable[[], object]] = [
        lambda: len(m),
        lambda: m[0],
        lambda: m[0:4],
        lambda: m.__setitem__(0, 1),
        lambda: m.find(b"x"),
        lambda: m.rfind(b"x"),
        lambda: m.force(),
        lambda: m.flush(),
        lambda: m.load(),
        lambda: m.advise(mmap.MADV_NORMAL),
        lambda: m.view(),
        lambda: m.read(1),
        lambda: m.write(b"x"),
        lambda: m.seek(0),
        lambda: m.tell(),
        lambda: m.size(),
        lambda: m.move(0, 1, 1),
        lambda: m.__enter__(),
    ]
    for use in uses:
        with pytest.raises(ClosedChannelError, match="closed"):
            use()
    assert "closed" in repr(m)
    # memoryview(m) goes straight to mmap's C buffer slot (3.10/3.11): still a ValueError, never a crash.
    with pytest.raises(ValueError):
        memoryview(m)


def test_close_with_live_view_is_a_clear_buffer_error(rw_fd: int) -> None:
    m = map_file(rw_fd, MapMode.READ_ONLY)
    v = m.view()
    with pytest.raises(BufferError, match="memoryviews of it are still alive"):
        m.close()
    assert m[0:1] == v[0:1]  # still mapped
    v.release()
    m.close()
    assert m.closed


def test_resize_is_refused(rw_fd: int) -> None:
    with map_file(rw_fd, MapMode.READ_WRITE) as m, pytest.raises(OSError) as e:
        m.resize(10)
    assert e.value.errno == errno.EOPNOTSUPP


# --- positions and sizes ---
def test_position_and_size_select_the_region(rw_fd: int, data: bytes) -> None:
    with map_file(rw_fd, MapMode.READ_ONLY, position=GRAN) as m:
        assert m.position == GRAN and len(m) == len(data) - GRAN
        assert m[:] == data[GRAN:]
    with map_file(rw_fd, MapMode.READ_ONLY, position=GRAN, size=10) as m:
        assert m[:] == data[GRAN : GRAN + 10]


def test_unaligned_position_is_a_clear_value_error(rw_fd: int) -> None:
    with pytest.raises(ValueError, match=rf"position {GRAN + 5} .*map from {GRAN} and use view\(\)\[5:\]"):
        map_file(rw_fd, MapMode.READ_ONLY, position=GRAN + 5, size=10)


def test_zero_bytes_is_a_value_error(tmp_path: Path, rw_fd: int, data: bytes) -> None:
    path = tmp_path / "empty"
    path.touch()
    fd = os.open(path, os.O_RDWR)
    try:
        for mode in MapMode:
            with pytest.raises(ValueError, match="cannot map 0 bytes"):
                map_file(fd, mode)
    finally:
        os.close(fd)
    with pytest.raises(ValueError, match="cannot map 0 bytes"):
        map_file(rw_fd, MapMode.READ_ONLY, size=0)


@pytest.mark.parametrize("mode", [MapMode.READ_ONLY, MapMode.PRIVATE])
def test_beyond_eof_without_write_is_a_value_error(rw_fd: int, data: bytes, mode: MapMode) -> None:
    expected = rf"ends at {len(data) + 1}, beyond the end of the file \({len(data)} bytes\)"
    with pytest.raises(ValueError, match=expected):
        map_file(rw_fd, mode, size=len(data) + 1)
    with pytest.raises(ValueError, match="beyond the end"):
        map_file(rw_fd, mode, position=64 * GRAN)
    assert os.fstat(rw_fd).st_size == len(data)


def test_negative_arguments(rw_fd: int) -> None:
    with pytest.raises(ValueError, match="position"):
        map_file(rw_fd, MapMode.READ_ONLY, position=-GRAN)
    with pytest.raises(ValueError, match="size"):
        map_file(rw_fd, MapMode.READ_ONLY, size=-1)


def test_read_write_beyond_eof_extends_and_allocates(rw_fd: int, data: bytes) -> None:
    # 64 granules: the extension alone needs far more blocks than the whole file had before.
    new_end = 64 * GRAN + 4 * PAGE_SIZE
    blocks_before = os.fstat(rw_fd).st_blocks
    with map_file(rw_fd, MapMode.READ_WRITE, size=new_end) as m:
        st = os.fstat(rw_fd)
        assert st.st_size == new_end
        # st_blocks counts 512-byte units: the new bytes are allocated, not a hole.
        assert (st.st_blocks - blocks_before) * 512 >= new_end - len(data) - PAGE_SIZE
        assert m[: len(data)] == data
        assert m[len(data) :] == bytes(new_end - len(data))
        m[-3:] = b"end"
    assert os.pread(rw_fd, 3, new_end - 3) == b"end"


def test_extension_enospc_raises_at_map_time_and_keeps_the_size(
    rw_fd: int, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    real = os.posix_fallocate

    def full_disk(fd: int, offset: int, length: int) -> None:
        # A partial allocation that moved EOF, then the disk is full: the worst case to clean up.
        calls.append((offset, length))
        real(fd, offset, length // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full_disk)
    with pytest.raises(OSError) as e:
        map_file(rw_fd, MapMode.READ_WRITE, size=len(data) + 10 * PAGE_SIZE)
    assert e.value.errno == errno.ENOSPC
    assert calls == [(len(data), 10 * PAGE_SIZE)]
    assert os.fstat(rw_fd).st_size == len(data)
    assert os.pread(rw_fd, len(data) + 1, 0) == data


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.EINVAL])
def test_extension_without_fallocate_writes_zeros(
    rw_fd: int, data: bytes, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    monkeypatch.setattr("zcopy.mapped._ZERO_CHUNK", 3 * PAGE_SIZE)  # several chunks, the last one partial
    new_end = len(data) + 10 * PAGE_SIZE + 5
    blocks_before = os.fstat(rw_fd).st_blocks
    with map_file(rw_fd, MapMode.READ_WRITE, size=new_end) as m:
        assert os.fstat(rw_fd).st_size == new_end
        assert (os.fstat(rw_fd).st_blocks - blocks_before) * 512 >= 10 * PAGE_SIZE
        assert m[len(data) :] == bytes(new_end - len(data))


def test_zero_fill_enospc_restores_the_size(rw_fd: int, data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "no fallocate here")

    real_pwrite = os.pwrite
    writes: list[int] = []

    def pwrite_then_full(fd: int, buf: bytes, offset: int) -> int:
        if writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        writes.append(offset)
        return real_pwrite(fd, buf, offset)

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    monkeypatch.setattr(os, "pwrite", pwrite_then_full)
    monkeypatch.setattr("zcopy.mapped._ZERO_CHUNK", PAGE_SIZE)
    with pytest.raises(OSError) as e:
        map_file(rw_fd, MapMode.READ_WRITE, size=len(data) + 4 * PAGE_SIZE)
    assert e.value.errno == errno.ENOSPC
    assert writes == [len(data)]  # the first chunk did land before the disk filled
    assert os.fstat(rw_fd).st_size == len(data)


def test_beyond_4_gib_sparse_read_only(tmp_path: Path) -> None:
    # No 2 GiB / 4 GiB cap: a sparse 5 GiB file costs a few blocks; only the touched pages are read.
    size = 5 << 30
    path = tmp_path / "big.sparse"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, size)
        os.pwrite(fd, b"far end!", size - 8)
        os.pwrite(fd, b"past4G", (4 << 30) + 4)
        with map_file(fd, MapMode.READ_ONLY) as m:
            assert len(m) == size
            assert m[-8:] == b"far end!"
            assert m[(4 << 30) + 4 : (4 << 30) + 10] == b"past4G"
            assert m.find(b"far end!", size - PAGE_SIZE) == size - 8
        with map_file(fd, MapMode.READ_ONLY, position=4 << 30, size=PAGE_SIZE) as m:
            assert m.position == 4 << 30 and m[4:10] == b"past4G"
    finally:
        os.close(fd)


# --- accounting: map / force / close report to observe, with the syscalls strace sees ----------------------

_OBSERVED_MAP = r"""
import json, os, sys
from zcopy import FileChannel, MapMode, observe
with FileChannel.open(sys.argv[1], "r+") as ch:
    os.access("/zcopy-mark-start", os.F_OK)
    with observe() as obs:
        m = ch.map(MapMode.READ_WRITE, 0, 3 * 4096)
        m[0:3] = b"new"
        m.force()
        m.close()
    os.access("/zcopy-mark-end", os.F_OK)
print(json.dumps([[o.op, o.route, o.syscalls] for o in obs.operations]))
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed (.ci/run installs it)")
def test_mapping_operations_are_observed_and_match_strace(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"old" + b"\0" * 100)  # the mapping extends the file: fallocate
    log = tmp_path / "log"
    out = subprocess.run(
        ["strace", "-o", str(log), "-e", "trace=mmap,munmap,msync,fallocate,fcntl,access",
         sys.executable, "-c", _OBSERVED_MAP, str(f)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    ops = json.loads(out)
    assert [(op, route) for op, route, _ in ops] == [("map", "mmap"), ("force", "msync"), ("unmap", "mmap")]
    text = log.read_text()
    window = text[text.index("/zcopy-mark-start") : text.index("/zcopy-mark-end")].splitlines()[1:]
    seen: dict[str, int] = {}
    for line in window:
        name = line.split("(", 1)[0]
        seen[name] = seen.get(name, 0) + 1
    recorded: dict[str, int] = {}
    for _, _, calls in ops:
        for k, v in calls.items():
            recorded[k] = recorded.get(k, 0) + v
    for name in ("mmap", "munmap", "msync", "fallocate", "fcntl"):
        assert recorded.get(name, 0) == seen.get(name, 0), (name, recorded, seen)
    assert f.read_bytes()[:3] == b"new"
