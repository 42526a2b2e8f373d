"""routes.direct_writer: overlapped O_DIRECT writes (a helper thread writes one buffer while the caller fills the
next), in order, with the refusal rule, errors that name what landed, and nothing left running afterwards."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from direct_fs import dio_offset

from zcopy.routes import DirectWriter
from zcopy.routes._base import GiveUp
from zcopy.routes.direct_writer import THREAD_NAME

KiB = 1 << 10


def helpers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


def slow_pwrite(monkeypatch: pytest.MonkeyPatch, fd: int, fail_at: int | None = None, err: int = errno.EIO,
                direct_only: bool = True) -> list[int]:  # fmt: skip
    """os.pwrite on `fd` made slow (so the caller runs ahead and every buffer is in use), failing with `err` at the
    `fail_at`-th O_DIRECT write (1-based). Returns the list of write sizes seen, for the test to inspect."""
    real: Callable[[int, memoryview, int], int] = os.pwrite
    seen: list[int] = []

    def fake(f: int, data: memoryview, pos: int) -> int:
        if f == fd and (_direct(f) or not direct_only):
            seen.append(len(data))
            time.sleep(0.002)
            if fail_at is not None and len(seen) == fail_at:
                raise OSError(err, f"injected {errno.errorcode[err]}")
        return real(f, data, pos)

    monkeypatch.setattr(os, "pwrite", fake)
    return seen


def _write_all(w: DirectWriter, data: bytes, start: int) -> None:
    pos, left = start, len(data)
    while left:
        view = w.buffer(pos, left)
        n = len(view)
        view[:] = data[pos - start : pos - start + n]
        w.submit(view, pos)
        pos += n
        left -= n


@pytest.mark.parametrize("start", [0, 4096, 100])
@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 64 * KiB * 7 + 13])
def test_pieces_land_in_order_and_identical(ddir: Path, monkeypatch: pytest.MonkeyPatch, size: int,
                                            start: int) -> None:  # fmt: skip
    data = os.urandom(size)  # no repeating pattern: a piece written at the wrong offset would show
    fd = os.open(ddir / "dst", os.O_RDWR | os.O_CREAT)
    try:
        seen = slow_pwrite(monkeypatch, fd)
        with DirectWriter(fd, chunk=64 * KiB, depth=3) as w:
            _write_all(w, data, start)
        assert not _direct(fd)  # the flag as found
        assert w.written == size and w.landed() == size
        a = dio_offset(ddir / "dst")
        assert sum(seen) == max(0, (start + size) // a * a - -(-start // a) * a)  # the aligned body by DMA
    finally:
        os.close(fd)
    assert (ddir / "dst").read_bytes()[start:] == data
    assert not helpers()


def test_the_first_write_is_synchronous_then_the_helper_overlaps(ddir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fd = os.open(ddir / "dst", os.O_RDWR | os.O_CREAT)
    writers: list[str] = []
    real = os.pwrite

    def record(f: int, data: memoryview, pos: int) -> int:
        writers.append(threading.current_thread().name)
        return real(f, data, pos)

    monkeypatch.setattr(os, "pwrite", record)
    try:
        with DirectWriter(fd, chunk=64 * KiB, depth=2) as w:
            _write_all(w, os.urandom(64 * KiB * 5), 0)
    finally:
        os.close(fd)
    assert writers[0] == threading.current_thread().name  # proves O_DIRECT works before reading ahead
    assert set(writers[1:]) == {THREAD_NAME}
    assert not helpers()


def test_a_helper_error_is_raised_with_what_landed_and_the_rest_dropped(ddir: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(64 * KiB * 10)
    fds = open_fds()
    fd = os.open(ddir / "dst", os.O_RDWR | os.O_CREAT)
    try:
        slow_pwrite(monkeypatch, fd, fail_at=4)
        w = DirectWriter(fd, chunk=64 * KiB, depth=3)
        with pytest.raises(OSError) as exc:
            _write_all(w, data, 0)
            w.close()
        assert exc.value.errno == errno.EIO
        w.close()  # closing again is harmless
        assert w.landed() == 3 * 64 * KiB  # three pieces landed, in order; nothing after the failed one
        assert not _direct(fd)
    finally:
        os.close(fd)
    assert (ddir / "dst").read_bytes() == data[: 3 * 64 * KiB]
    assert not helpers() and open_fds() == fds


def test_exit_with_the_callers_error_keeps_it(ddir: Path) -> None:
    fd = os.open(ddir / "dst", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(KeyError), DirectWriter(fd, chunk=64 * KiB) as w:
            _write_all(w, os.urandom(64 * KiB * 4), 0)
            raise KeyError("the caller's")
        assert w.landed() == 64 * KiB * 4  # queued writes finished before the helper stopped
    finally:
        os.close(fd)
    assert not helpers()


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EOPNOTSUPP])
def test_a_refused_first_write_gives_up_or_is_salvaged(ddir: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    data = os.urandom(64 * KiB * 3 + 5)
    fd = os.open(ddir / "dst", os.O_RDWR | os.O_CREAT)
    try:
        slow_pwrite(monkeypatch, fd, fail_at=1, err=code)
        with pytest.raises(GiveUp, match="refused an aligned O_DIRECT write"), DirectWriter(fd, chunk=64 * KiB) as w:
            _write_all(w, data, 0)
        assert w.written == 0
        seen = slow_pwrite(monkeypatch, fd, fail_at=1, err=code)
        with DirectWriter(fd, chunk=64 * KiB, salvage=True) as w:
            _write_all(w, data, 0)
        assert w.refused is not None and errno.errorcode[code] in w.refused
        assert w.tally.user_bytes == len(data)  # every byte went through the page cache, and is counted so
        assert len(seen) == 1 and not _direct(fd)
    finally:
        os.close(fd)
    assert (ddir / "dst").read_bytes() == data


def test_a_refusal_after_a_write_succeeded_is_an_error(ddir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fd = os.open(ddir / "dst", os.O_RDWR | os.O_CREAT)
    try:
        slow_pwrite(monkeypatch, fd, fail_at=2, err=errno.EINVAL)
        with pytest.raises(OSError) as exc, DirectWriter(fd, chunk=64 * KiB, salvage=True) as w:
            _write_all(w, os.urandom(64 * KiB * 4), 0)
        assert exc.value.errno == errno.EINVAL and not isinstance(exc.value, GiveUp)
        assert w.refused is None and w.landed() == 64 * KiB
    finally:
        os.close(fd)
    assert not helpers()


def test_an_open_direct_fd_stays_direct(ddir: Path) -> None:
    fd = os.open(ddir / "dst", os.O_RDWR | os.O_CREAT | os.O_DIRECT)
    try:
        with DirectWriter(fd, chunk=64 * KiB) as w:
            _write_all(w, os.urandom(64 * KiB + 100), 0)  # the tail went through the page cache, flag off
        assert _direct(fd)
    finally:
        os.close(fd)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="depth"):
        DirectWriter(0, depth=0)


def test_without_overlap_every_write_is_the_callers(ddir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(64 * KiB * 5 + 7)
    fd = os.open(ddir / "dst", os.O_RDWR | os.O_CREAT)
    writers: list[str] = []
    real = os.pwrite

    def record(f: int, buf: memoryview, pos: int) -> int:
        writers.append(threading.current_thread().name)
        return real(f, buf, pos)

    monkeypatch.setattr(os, "pwrite", record)
    try:
        with DirectWriter(fd, chunk=64 * KiB, overlap=False) as w:
            _write_all(w, data, 0)
    finally:
        os.close(fd)
    assert set(writers) == {threading.current_thread().name} and len(writers) >= 6
    assert (ddir / "dst").read_bytes() == data
