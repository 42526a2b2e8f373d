"""Tests for zcopy.channel: FileChannel, FileLock and SocketChannel on real files (tmp_path), real sockets
(socketpair, TCP on 127.0.0.1:0, Unix sockets), real pipes and real subprocesses. Faults are injected by patching os.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from zcopy import FileChannel, FileLock, MapMode, SocketChannel, observe, routes
from zcopy.channel import _overlap
from zcopy.errors import (
    ClosedChannelError,
    NonReadableChannelError,
    NonWritableChannelError,
    OverlappingFileLockError,
)

# Not a pattern that repeats within a page, so an off-by-some-bytes transfer compares unequal.
DATA = bytes((i * 7 + i // 251) % 256 for i in range(3 * 4096 + 77))


@pytest.fixture
def src_path(tmp_path: Path) -> Path:
    p = tmp_path / "src.bin"
    p.write_bytes(DATA)
    return p


@pytest.fixture
def src(src_path: Path) -> Iterator[FileChannel]:
    with FileChannel.open(src_path, "r") as ch:
        yield ch


def _drain(sock: socket.socket, out: bytearray, delay: float = 0.0) -> threading.Thread:
    """Read sock to EOF into out in a thread (after `delay` seconds)."""

    def run() -> None:
        time.sleep(delay)
        while chunk := sock.recv(1 << 16):
            out.extend(chunk)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on 127.0.0.1: (client, server-side connection)."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
    with client, conn:
        yield client, conn


@pytest.fixture
def small_tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Like tcp_pair, with 64 KiB socket buffers (which also stops autotuning), so a few MiB overflow them."""
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # inherited by the accepted socket
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        client.connect(srv.getsockname())
        conn, _ = srv.accept()
    with client, conn:
        yield client, conn


# --- mode strings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("b", ["", "b"])
@pytest.mark.parametrize(
    ("mode", "readable", "writable", "truncates", "appends", "creates"),
    [
        ("r", True, False, False, False, False),
        ("r+", True, True, False, False, False),
        ("w", False, True, True, False, True),
        ("w+", True, True, True, False, True),
        ("a", False, True, False, True, True),
        ("a+", True, True, False, True, True),
    ],
)
def test_open_modes_on_existing_file(
    tmp_path: Path, mode: str, b: str, readable: bool, writable: bool, truncates: bool, appends: bool, creates: bool
) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"hello")
    full = mode[0] + b + mode[1:]  # "r+b" style; "rb+" is covered below
    with FileChannel.open(p, full) as ch:
        assert (ch.readable, ch.writable) == (readable, writable)
        assert ch.name == str(p)
        assert not os.get_inheritable(ch.fileno())  # O_CLOEXEC: not leaked into subprocesses
        assert ch.size() == (0 if truncates else 5)
        if readable and not truncates:
            assert ch.read() == b"hello"
        if writable:
            ch.position = 0
            ch.write(b"XY")
    expected = b"XY" if truncates else (b"helloXY" if appends else (b"XYllo" if writable else b"hello"))
    assert p.read_bytes() == expected
    p.unlink()
    if creates:
        with FileChannel.open(p, full):
            pass
        assert p.exists()
    else:
        with pytest.raises(FileNotFoundError):
            FileChannel.open(p, full)


@pytest.mark.parametrize("mode", ["x", "xb", "x+", "x+b", "xb+"])
def test_open_exclusive_create(tmp_path: Path, mode: str) -> None:
    p = tmp_path / "new"
    with FileChannel.open(p, mode, perms=0o600) as ch:
        assert ch.writable
        assert ch.readable == ("+" in mode)
        ch.write(b"abc")
    assert p.read_bytes() == b"abc"
    assert p.stat().st_mode & 0o777 == 0o600 & ~_umask()
    with pytest.raises(FileExistsError):
        FileChannel.open(p, mode)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


@pytest.mark.parametrize("mode", ["rb+", "br", "+r", "ab+"])
def test_open_mode_letters_in_any_order(tmp_path: Path, mode: str) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"z")
    with FileChannel.open(p, mode) as ch:
        assert ch.readable
        assert ch.writable == ("+" in mode)


@pytest.mark.parametrize("mode", ["", "rw", "rt", "t", "U", "q", "wx", "ra", "bb", "rbb", "r++", "w++b", "r+ "])
def test_open_invalid_mode(tmp_path: Path, mode: str) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"z")
    with pytest.raises(ValueError, match="invalid mode"):
        FileChannel.open(p, mode)
    assert p.read_bytes() == b"z"  # nothing was opened, let alone truncated


# --- wrapping fds and file objects --------------------------------------------------------------------------


def test_wrap_int_fd_not_owned_leaves_fd_open(src_path: Path) -> None:
    fd = os.open(src_path, os.O_RDONLY)
    try:
        ch = FileChannel(fd)
        assert ch.name == f"fd:{fd}"
        assert ch.fileno() == fd
        assert ch.read(4) == DATA[:4]
        ch.close()
        assert ch.closed
        assert os.read(fd, 4) == DATA[4:8]  # still open, and the position is shared
    finally:
        os.close(fd)


def test_wrap_int_fd_owned_closes_fd(src_path: Path) -> None:
    fd = os.open(src_path, os.O_RDONLY)
    with FileChannel(fd, own=True, name="mine") as ch:
        assert ch.name == "mine"
    assert ch.closed
    with pytest.raises(OSError) as ei:
        os.fstat(fd)
    assert ei.value.errno == errno.EBADF


def test_wrap_file_object_not_owned(tmp_path: Path) -> None:
    p = tmp_path / "f"
    with open(p, "w+b") as f:
        f.write(b"buffered")  # sits in the BufferedRandom buffer until the channel flushes it
        ch = FileChannel(f)
        assert ch.name == str(p)
        assert ch.size() == 8
        assert ch.read(3, position=0) == b"buf"
        ch.close()
        assert not f.closed
        f.write(b"!")
    assert p.read_bytes() == b"buffered!"


def test_wrap_file_object_owned_closes_it(tmp_path: Path) -> None:
    p = tmp_path / "f"
    f = open(p, "wb")  # noqa: SIM115 - the channel owns and closes it
    with FileChannel(f, own=True) as ch:
        ch.write(b"owned")
    assert f.closed
    assert p.read_bytes() == b"owned"


def test_wrap_file_object_access_mode(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    with open(p, "rb") as f:
        ch = FileChannel(f)
        assert (ch.readable, ch.writable) == (True, False)
        with pytest.raises(NonWritableChannelError):
            ch.write(b"x")
    with open(p, "ab") as f:
        ch = FileChannel(f)
        assert (ch.readable, ch.writable) == (False, True)
        with pytest.raises(NonReadableChannelError):
            ch.read()


def test_close_is_idempotent_and_repr(src_path: Path) -> None:
    ch = FileChannel.open(src_path)
    assert f"fd={ch.fileno()}" in repr(ch)
    ch.close()
    ch.close()
    assert ch.closed
    assert "closed" in repr(ch)


# --- reading and writing ------------------------------------------------------------------------------------


def test_read_to_eof_and_zero_at_eof(src: FileChannel) -> None:
    assert src.read() == DATA
    assert src.position == len(DATA)
    assert src.read() == b""
    assert src.read(10) == b""
    buf = bytearray(10)
    assert src.readinto(buf) == 0
    assert src.readinto(buf, position=len(DATA) + 100) == 0
    src.position = len(DATA) + 100  # past EOF is allowed, reads give nothing
    assert src.read() == b""


def test_read_n_and_positional_read_does_not_move(src: FileChannel) -> None:
    assert src.read(100) == DATA[:100]
    assert src.position == 100
    assert src.read(50, position=4000) == DATA[4000:4050]
    assert src.read(-1, position=len(DATA) - 5) == DATA[-5:]
    assert src.position == 100
    assert src.read(len(DATA)) == DATA[100:]  # fewer than asked only at EOF
    assert src.read(0) == b""


def test_readinto_and_readv(src: FileChannel) -> None:
    buf = bytearray(10)
    assert src.readinto(buf) == 10
    assert bytes(buf) == DATA[:10]
    assert src.position == 10
    assert src.readinto(memoryview(buf)[2:5], position=1000) == 3
    assert bytes(buf[2:5]) == DATA[1000:1003]
    assert src.position == 10
    a, b, c = bytearray(3), bytearray(0), bytearray(5)
    assert src.readv([a, b, c]) == 8
    assert bytes(a + c) == DATA[10:18]
    assert src.position == 18
    assert src.readv([a, c], position=len(DATA) - 4) == 4
    assert bytes(a) + bytes(c[:1]) == DATA[-4:]
    assert src.position == 18


def test_write_and_positional_write(tmp_path: Path) -> None:
    with FileChannel.open(tmp_path / "f", "w+") as ch:
        assert ch.write(b"hello world") == 11
        assert ch.position == 11
        assert ch.write(memoryview(b"WORLD"), position=6) == 5
        assert ch.position == 11
        assert ch.write(bytearray(b"!"), position=20) == 1  # past EOF: a hole of zeros
        assert ch.position == 11
        assert ch.size() == 21
        assert ch.read(-1, position=0) == b"hello WORLD" + bytes(9) + b"!"


def test_write_typed_memoryview_counts_bytes(tmp_path: Path) -> None:
    import array

    arr = array.array("i", range(10))
    with FileChannel.open(tmp_path / "f", "w+") as ch:
        assert ch.write(arr) == 10 * arr.itemsize  # type: ignore[arg-type]
        assert ch.read(-1, position=0) == arr.tobytes()


def test_write_large_buffer(tmp_path: Path) -> None:
    big = os.urandom(8 << 20)
    with FileChannel.open(tmp_path / "f", "w+") as ch:
        assert ch.write(big) == len(big)
        assert ch.write(big[:1000], position=len(big)) == 1000
        assert ch.size() == len(big) + 1000
        assert ch.read(-1, position=0) == big + big[:1000]


def test_writev_more_iovecs_than_iov_max(tmp_path: Path) -> None:
    iov_max = os.sysconf("SC_IOV_MAX")
    parts = [bytes([i % 251]) * (i % 7) for i in range(3 * iov_max + 5)]  # includes empty buffers
    joined = b"".join(parts)
    with FileChannel.open(tmp_path / "f", "w+") as ch:
        assert ch.writev(parts) == len(joined)
        assert ch.position == len(joined)
        assert ch.writev(parts, position=len(joined)) == len(joined)
        assert ch.position == len(joined)
        assert ch.read(-1, position=0) == joined * 2


def test_writev_loops_over_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev

    def short(fd: int, buffers: list[memoryview]) -> int:
        # The kernel may write less than asked (signals, quotas); give it 3 bytes at a time.
        first = bytes(b"".join(bytes(v) for v in buffers)[:3])
        return real(fd, [first])

    monkeypatch.setattr(os, "writev", short)
    parts = [b"abcde", b"", b"fg", b"hijklmnop"]
    with FileChannel.open(tmp_path / "f", "w+") as ch:
        assert ch.writev(parts) == 16
        monkeypatch.undo()
        assert ch.read(-1, position=0) == b"abcdefghijklmnop"


def test_append_mode_writes_at_end(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"0123")
    with FileChannel.open(p, "a+") as ch:
        ch.position = 0
        assert ch.read(2) == b"01"
        ch.write(b"AB")  # O_APPEND: at the end whatever the position
        assert ch.read(-1, position=0) == b"0123AB"


def test_negative_positions_rejected(src: FileChannel, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        src.position = -1
    with pytest.raises(ValueError):
        src.read(1, position=-1)
    with pytest.raises(ValueError):
        src.readinto(bytearray(1), position=-1)
    with FileChannel.open(tmp_path / "f", "w") as w:
        with pytest.raises(ValueError):
            w.write(b"x", position=-1)
        with pytest.raises(ValueError):
            w.truncate(-1)
    with pytest.raises(ValueError):
        src.transfer_to(-1, 1, 1)
    with pytest.raises(ValueError):
        src.transfer_to(0, -1, 1)


# --- size, truncate, force ----------------------------------------------------------------------------------


def test_truncate_only_shrinks_and_clamps_position(tmp_path: Path) -> None:
    with FileChannel.open(tmp_path / "f", "w+") as ch:
        ch.write(b"0123456789")
        assert ch.truncate(20) is ch
        assert ch.size() == 10  # never grows
        assert ch.position == 10
        ch.position = 8
        ch.truncate(4)
        assert ch.size() == 4
        assert ch.position == 4  # clamped
        ch.position = 1
        ch.truncate(2)
        assert ch.position == 1  # not moved when already inside
        assert ch.read(-1, position=0) == b"01"
        ch.truncate(0)
        assert (ch.size(), ch.position) == (0, 0)


@pytest.mark.parametrize("metadata", [True, False])
def test_force_calls_the_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metadata: bool) -> None:
    calls: list[tuple[str, int]] = []

    def counting(name: str) -> Callable[[int], None]:
        real = getattr(os, name)

        def sync(fd: int) -> None:
            calls.append((name, fd))
            real(fd)

        return sync

    monkeypatch.setattr(os, "fsync", counting("fsync"))
    monkeypatch.setattr(os, "fdatasync", counting("fdatasync"))
    with FileChannel.open(tmp_path / "f", "w") as ch, observe() as obs:
        ch.write(b"data")
        ch.force(metadata=metadata)
        assert calls == [("fsync" if metadata else "fdatasync", ch.fileno())]
    assert [o.op for o in obs.operations] == ["write", "force"]
    assert obs.operations[1].route == ("fsync" if metadata else "fdatasync")


@pytest.mark.parametrize("metadata", [True, False])
def test_force_raises_eio_once_and_never_swallows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metadata: bool
) -> None:
    calls: list[int] = []

    def failing(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync" if metadata else "fdatasync", failing)
    with FileChannel.open(tmp_path / "f", "w") as ch:
        ch.write(b"data")
        with pytest.raises(OSError) as ei:
            ch.force(metadata=metadata)
        assert ei.value.errno == errno.EIO
        assert calls == [ch.fileno()]  # not retried into a false success
        with pytest.raises(OSError):
            ch.force(metadata=metadata)  # a later force reports again, it does not pretend success
        assert len(calls) == 2


def test_force_on_read_only_channel_is_allowed(src: FileChannel) -> None:
    src.force()  # fsync(2) works on any open fd, like Java's force on a read-only channel


# --- a model-based test: FileChannel vs bytearray -----------------------------------------------------------


class ChannelMachine(RuleBasedStateMachine):
    """read/write/position/truncate/readv/writev against an in-memory file model."""

    def __init__(self) -> None:
        super().__init__()
        fd, self.path = tempfile.mkstemp(prefix="zcopy-chan-")
        os.close(fd)
        self.ch = FileChannel.open(self.path, "w+")
        self.model = bytearray()
        self.pos = 0

    def _put(self, at: int, data: bytes) -> None:
        if not data:
            return  # writing nothing past EOF does not extend the file
        if at > len(self.model):
            self.model.extend(bytes(at - len(self.model)))
        self.model[at : at + len(data)] = data

    @rule(data=st.binary(max_size=300))
    def write(self, data: bytes) -> None:
        assert self.ch.write(data) == len(data)
        self._put(self.pos, data)
        self.pos += len(data)

    @rule(data=st.binary(max_size=300), at=st.integers(0, 2000))
    def write_at(self, data: bytes, at: int) -> None:
        assert self.ch.write(data, position=at) == len(data)
        self._put(at, data)

    @rule(parts=st.lists(st.binary(max_size=50), max_size=6))
    def writev(self, parts: list[bytes]) -> None:
        joined = b"".join(parts)
        assert self.ch.writev(parts) == len(joined)
        self._put(self.pos, joined)
        self.pos += len(joined)

    @rule(n=st.integers(-1, 400))
    def read(self, n: int) -> None:
        end = len(self.model) if n < 0 else self.pos + n
        expected = bytes(self.model[self.pos : end])
        assert self.ch.read(n) == expected
        self.pos += len(expected)

    @rule(n=st.integers(-1, 400), at=st.integers(0, 2000))
    def read_at(self, n: int, at: int) -> None:
        end = len(self.model) if n < 0 else at + n
        assert self.ch.read(n, position=at) == bytes(self.model[at:end])

    @rule(sizes=st.lists(st.integers(0, 40), max_size=4), at=st.none() | st.integers(0, 2000))
    def readv(self, sizes: list[int], at: int | None) -> None:
        bufs = [bytearray(s) for s in sizes]
        start = self.pos if at is None else at
        got = self.ch.readv(bufs, at)
        expected = bytes(self.model[start : start + sum(sizes)])
        assert got == len(expected)  # a regular file fills the buffers unless EOF comes first
        assert b"".join(bufs)[:got] == expected
        if at is None:
            self.pos += got

    @rule(to=st.integers(0, 2000))
    def seek(self, to: int) -> None:
        self.ch.position = to
        self.pos = to

    @rule(size=st.integers(0, 2000))
    def truncate(self, size: int) -> None:
        self.ch.truncate(size)
        del self.model[size:]
        self.pos = min(self.pos, size)

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def reopen(self) -> None:
        # What the channel wrote is in the file, as seen through a second, independent open.
        with FileChannel.open(self.path, "r") as other:
            assert other.read() == bytes(self.model)

    @invariant()
    def agrees(self) -> None:
        assert self.ch.position == self.pos
        assert self.ch.size() == len(self.model)

    def teardown(self) -> None:
        self.ch.close()
        os.unlink(self.path)


ChannelMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestChannelModel = ChannelMachine.TestCase


# --- closed and access-mode errors --------------------------------------------------------------------------

# Each op gets the channel and a spare fd (/dev/null) to transfer to or from.
FILE_OPS: dict[str, Callable[[FileChannel, int], object]] = {
    "fileno": lambda ch, fd: ch.fileno(),
    "position_get": lambda ch, fd: ch.position,
    "position_set": lambda ch, fd: setattr(ch, "position", 0),
    "size": lambda ch, fd: ch.size(),
    "read": lambda ch, fd: ch.read(),
    "read_at": lambda ch, fd: ch.read(1, position=0),
    "readinto": lambda ch, fd: ch.readinto(bytearray(1)),
    "readv": lambda ch, fd: ch.readv([bytearray(1)]),
    "write": lambda ch, fd: ch.write(b"x"),
    "write_at": lambda ch, fd: ch.write(b"x", position=0),
    "writev": lambda ch, fd: ch.writev([b"x"]),
    "truncate": lambda ch, fd: ch.truncate(0),
    "force": lambda ch, fd: ch.force(),
    "lock": lambda ch, fd: ch.lock(),
    "try_lock": lambda ch, fd: ch.try_lock(),
    "shared_lock": lambda ch, fd: ch.try_lock(shared=True),
    "map": lambda ch, fd: ch.map(),
    "transfer_to": lambda ch, fd: ch.transfer_to(0, 1, fd),
    "transfer_from": lambda ch, fd: ch.transfer_from(fd, 0, 1),
}


@pytest.fixture
def devnull() -> Iterator[int]:
    fd = os.open(os.devnull, os.O_RDWR)
    yield fd
    os.close(fd)


@pytest.mark.parametrize("op", sorted(FILE_OPS))
def test_closed_channel_raises(src_path: Path, op: str, devnull: int) -> None:
    ch = FileChannel.open(src_path, "r+")
    ch.close()
    with pytest.raises(ClosedChannelError):
        FILE_OPS[op](ch, devnull)


def test_closed_channel_error_is_a_value_error(src_path: Path) -> None:
    ch = FileChannel.open(src_path)
    ch.close()
    with pytest.raises(ValueError):
        ch.read()


@pytest.mark.parametrize("op", ["read", "read_at", "readinto", "readv", "shared_lock", "map", "transfer_to"])
def test_write_only_channel_is_not_readable(src_path: Path, op: str, devnull: int) -> None:
    with FileChannel.open(src_path, "a") as ch, pytest.raises(NonReadableChannelError):
        FILE_OPS[op](ch, devnull)
    assert src_path.read_bytes() == DATA


@pytest.mark.parametrize("op", ["write", "write_at", "writev", "truncate", "lock", "try_lock", "transfer_from"])
def test_read_only_channel_is_not_writable(src_path: Path, op: str, devnull: int) -> None:
    with FileChannel.open(src_path, "r") as ch, pytest.raises(NonWritableChannelError):
        FILE_OPS[op](ch, devnull)
    assert src_path.read_bytes() == DATA


def test_map_read_write_needs_a_writable_channel(src: FileChannel, src_path: Path) -> None:
    with pytest.raises(NonWritableChannelError):
        src.map(MapMode.READ_WRITE)
    with src.map(MapMode.PRIVATE) as m:  # a private copy-on-write mapping needs only read access
        m[0:1] = b"\xff"
        assert m[1:4] == DATA[1:4]
    assert src_path.read_bytes() == DATA
    with FileChannel.open(src_path, "r+") as rw, rw.map(MapMode.READ_WRITE) as m:
        m[0:2] = b"ZZ"
    assert src_path.read_bytes()[:3] == b"ZZ" + DATA[2:3]


def test_transfer_into_a_read_only_target_channel(src: FileChannel, tmp_path: Path) -> None:
    p = tmp_path / "t"
    p.write_bytes(b"")
    with FileChannel.open(p, "r") as target, pytest.raises(NonWritableChannelError):
        src.transfer_to(0, 10, target)
    with (
        FileChannel.open(p, "w") as dst,
        FileChannel.open(tmp_path / "w", "w") as wsrc,
        pytest.raises(NonReadableChannelError),
    ):
        dst.transfer_from(wsrc, 0, 10)
    assert p.read_bytes() == b""


# --- locks --------------------------------------------------------------------------------------------------


def test_two_channels_in_one_process_conflict(src_path: Path) -> None:
    with FileChannel.open(src_path, "r+") as a, FileChannel.open(src_path, "r+") as b:
        lk = a.try_lock()
        assert isinstance(lk, FileLock)
        assert (lk.position, lk.size, lk.shared, lk.valid) == (0, 0, False, True)
        assert "exclusive" in repr(lk)
        assert b.try_lock() is None
        assert b.try_lock(shared=True) is None
        assert b.try_lock(1 << 40, 10) is None  # size 0 locks to EOF however far it grows
        lk.release()
        assert not lk.valid
        lk.release()  # idempotent
        lk2 = b.try_lock()
        assert lk2 is not None
        assert a.try_lock(shared=True) is None
        lk2.release()


def test_shared_locks_share_and_exclude_writers(src_path: Path) -> None:
    with (
        FileChannel.open(src_path, "r") as a,
        FileChannel.open(src_path, "r") as b,
        FileChannel.open(src_path, "r+") as c,
    ):
        s1 = a.try_lock(shared=True)
        s2 = b.try_lock(shared=True)
        assert s1 is not None and s2 is not None
        assert s1.shared
        assert c.try_lock() is None
        s1.release()
        assert c.try_lock() is None  # s2 still held
        s2.release()
        ex = c.try_lock()
        assert ex is not None
        assert a.try_lock(shared=True) is None
        ex.release()


def test_non_overlapping_ranges_do_not_conflict(src_path: Path) -> None:
    with FileChannel.open(src_path, "r+") as a, FileChannel.open(src_path, "r+") as b:
        la = a.try_lock(0, 100)
        assert la is not None
        lb = b.try_lock(100, 100)  # [100, 200) touches [0, 100) but does not overlap
        assert lb is not None
        assert b.try_lock(99, 1) is None
        assert a.try_lock(150, 1000) is None
        assert a.try_lock(200, 0) is not None  # [200, EOF)


def test_overlapping_lock_on_the_same_channel_is_refused(src_path: Path) -> None:
    # Java's OverlappingFileLockException: OFD locks of one open file would merge, and releasing the second
    # would silently unlock bytes the first still covers. Other channels keep getting real conflicts.
    with FileChannel.open(src_path, "r+") as a, FileChannel.open(src_path, "r+") as b:
        first = a.lock(0, 100)
        for pos, size, shared in [(50, 100, False), (99, 1, True), (0, 0, False), (10, 10, False)]:
            with pytest.raises(OverlappingFileLockError, match="overlaps"):
                a.try_lock(pos, size, shared=shared)
            with pytest.raises(OverlappingFileLockError):
                a.lock(pos, size, shared=shared)
        assert b.try_lock(50, 10) is None  # still held by a after the refusals: nothing was converted
        tail = a.lock(100, 0)  # adjacent, not overlapping
        with pytest.raises(OverlappingFileLockError):
            a.try_lock(1 << 40, 1)  # size 0 covers everything past 100, however far
        first.release()
        again = a.try_lock(0, 100)  # a released lock no longer counts
        assert again is not None and tail.valid
        assert b.try_lock(150, 1) is None


def test_overlap_rule() -> None:
    assert _overlap(0, 100, 99, 1) and not _overlap(0, 100, 100, 5) and not _overlap(100, 5, 0, 100)
    assert _overlap(0, 0, 1 << 50, 1) and _overlap(5, 1, 0, 0) and _overlap(0, 0, 7, 0)
    assert not _overlap(10, 0, 0, 10)


def test_lock_released_by_context_manager(src_path: Path) -> None:
    with FileChannel.open(src_path, "r+") as a, FileChannel.open(src_path, "r+") as b:
        with a.lock(10, 20) as lk:
            assert lk.valid
            assert b.try_lock(15, 1) is None
        assert not lk.valid
        assert b.try_lock(15, 1) is not None


@pytest.mark.parametrize("own", [True, False])
def test_lock_released_by_close(src_path: Path, own: bool) -> None:
    fd = os.open(src_path, os.O_RDWR)
    try:
        a = FileChannel(fd, own=own)
        lk = a.lock()
        with FileChannel.open(src_path, "r+") as b:
            assert b.try_lock() is None
            a.close()
            assert not lk.valid
            lk.release()  # after close: a no-op, not an error
            assert b.try_lock() is not None  # Java semantics: closing a channel releases its locks
    finally:
        if not own:
            os.close(fd)


def test_lock_blocks_until_released(src_path: Path) -> None:
    with FileChannel.open(src_path, "r+") as a, FileChannel.open(src_path, "r+") as b:
        held = a.lock()
        timer = threading.Timer(0.3, held.release)
        t0 = time.monotonic()
        timer.start()
        with b.lock() as got:
            waited = time.monotonic() - t0
            assert got.valid
        timer.join()
    assert waited >= 0.25


def test_lock_rejects_negative_range(src_path: Path) -> None:
    with FileChannel.open(src_path, "r+") as a:
        with pytest.raises(ValueError):
            a.lock(-1, 1)
        with pytest.raises(ValueError):
            a.try_lock(0, -1)


_HOLDER = textwrap.dedent(
    """
    import sys
    from zcopy import FileChannel
    ch = FileChannel.open(sys.argv[1], "r+")
    lk = ch.lock(int(sys.argv[2]), int(sys.argv[3]), shared=sys.argv[4] == "shared")
    print("locked", flush=True)
    sys.stdin.readline()  # hold until the parent says so
    """
)


@pytest.mark.parametrize("kind", ["exclusive", "shared"])
def test_subprocess_lock_makes_try_lock_fail(src_path: Path, kind: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(src_path), "0", "100", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "locked"
        with FileChannel.open(src_path, "r+") as ch:
            assert ch.try_lock(50, 10) is None
            shared = ch.try_lock(50, 10, shared=True)
            assert (shared is not None) == (kind == "shared")
            if shared is not None:
                shared.release()
            assert ch.try_lock(100, 10) is not None  # outside the child's range
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.wait(timeout=10) == 0
            assert ch.try_lock(0, 100) is not None  # the child's exit released its lock
    finally:
        proc.kill()
        proc.wait()


# --- SocketChannel ------------------------------------------------------------------------------------------


def _echo_server(srv: socket.socket) -> threading.Thread:
    """Accept one connection and echo until EOF."""

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(1 << 16):
                conn.sendall(chunk)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _roundtrip(ch: SocketChannel) -> None:
    payload = os.urandom(300_000)
    assert ch.write(payload) == len(payload)
    ch.shutdown_output()
    got = bytearray()
    buf = bytearray(4096)
    n = ch.readinto(buf)
    got += buf[:n]
    while chunk := ch.read(65536):
        got += chunk
    assert bytes(got) == payload


def test_socket_channel_tcp(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        t = _echo_server(srv)
        with SocketChannel.open(srv.getsockname(), timeout=10) as ch:
            assert not ch.closed
            assert ch.fileno() == ch.socket.fileno()
            assert ch.socket.family == socket.AF_INET
            _roundtrip(ch)
        t.join(10)
    assert ch.closed


@pytest.mark.parametrize("as_path", [True, False])
def test_socket_channel_unix(tmp_path: Path, as_path: bool) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(str(path))
        srv.listen(1)
        t = _echo_server(srv)
        with SocketChannel.open(path if as_path else str(path), timeout=10) as ch:
            assert ch.socket.family == socket.AF_UNIX
            _roundtrip(ch)
        t.join(10)


def test_socket_channel_open_failure_closes(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SocketChannel.open(str(tmp_path / "missing.sock"))
    # A port bound but not listening refuses connections, and stays ours while we hold it: a port closed and
    # assumed free could be taken by anyone in between.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        with pytest.raises(ConnectionRefusedError):
            SocketChannel.open(bound.getsockname())


def test_socket_channel_observed() -> None:
    a, b = socket.socketpair()
    with SocketChannel(a) as ch, b, observe() as obs:
        ch.write(b"ping")
        b.sendall(b"pong")
        assert ch.read(10) == b"pong"
    assert [(o.op, o.nbytes) for o in obs.operations] == [("write", 4), ("read", 4)]


@pytest.mark.parametrize(
    "op",
    [
        lambda ch: ch.read(),
        lambda ch: ch.readinto(bytearray(4)),
        lambda ch: ch.write(b"x"),
        lambda ch: ch.fileno(),
        lambda ch: ch.shutdown_output(),
    ],
    ids=["read", "readinto", "write", "fileno", "shutdown_output"],
)
def test_socket_channel_closed(op: Callable[[SocketChannel], object]) -> None:
    a, b = socket.socketpair()
    b.close()
    ch = SocketChannel(a)
    ch.close()
    ch.close()
    assert ch.closed
    with pytest.raises(ClosedChannelError):
        op(ch)


def test_transfer_to_closed_targets(src: FileChannel, tmp_path: Path) -> None:
    a, b = socket.socketpair()
    b.close()
    sc = SocketChannel(a)
    sc.close()
    with pytest.raises(ClosedChannelError):
        src.transfer_to(0, 1, sc)
    fc = FileChannel.open(tmp_path / "t", "w")
    fc.close()
    with pytest.raises(ClosedChannelError):
        src.transfer_to(0, 1, fc)
    with FileChannel.open(tmp_path / "u", "w") as dst, pytest.raises(ClosedChannelError):
        dst.transfer_from(sc, 0, 1)


# --- transfer_to --------------------------------------------------------------------------------------------


def _received(end_stream: Callable[[], object], reader: threading.Thread, got: bytearray) -> Callable[[], bytes]:
    """read_back for a stream target: end the stream, wait for the reader thread, return what it got."""

    def read_back() -> bytes:
        end_stream()
        reader.join(10)
        return bytes(got)

    return read_back


def _check_transfer_to(src: FileChannel, target: Any, read_back: Callable[[], bytes], pos: int, count: int) -> None:
    src.position = 123
    n = src.transfer_to(pos, count, target)
    expected = DATA[pos : pos + count]
    assert n == len(expected)
    assert src.position == 123  # transfer_to never moves the channel's own position
    assert src.last_route in routes.ROUTES
    assert src.last_move is not None and src.last_move.route == src.last_route
    assert read_back() == expected


def test_transfer_to_socket(src: FileChannel, tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, conn = tcp_pair
    got = bytearray()
    t = _drain(conn, got)
    _check_transfer_to(src, client, _received(lambda: client.shutdown(socket.SHUT_WR), t, got), 10, 9000)
    assert src.last_route == "sendfile"  # the table's first choice for file → socket


def test_transfer_to_socket_channel(src: FileChannel) -> None:
    a, b = socket.socketpair()
    with SocketChannel(a) as ch, b:
        got = bytearray()
        t = _drain(b, got)
        _check_transfer_to(src, ch, _received(ch.shutdown_output, t, got), 0, len(DATA))


def test_transfer_to_file_channel_at_its_own_position(src: FileChannel, tmp_path: Path) -> None:
    p = tmp_path / "dst"
    p.write_bytes(b"#" * 20)
    with FileChannel.open(p, "r+") as dst:
        dst.position = 5
        _check_transfer_to(src, dst, lambda: p.read_bytes()[5:], 100, 5000)
        assert dst.position == 5 + 5000  # the target's position advances past what it received
        assert p.read_bytes()[:5] == b"#####"


def test_transfer_to_append_mode_channel(src: FileChannel, tmp_path: Path) -> None:
    p = tmp_path / "dst"
    p.write_bytes(b"head")
    with FileChannel.open(p, "a") as dst:
        assert src.transfer_to(0, 100, dst) == 100  # copy_file_range/sendfile refuse O_APPEND; a fallback serves
    assert p.read_bytes() == b"head" + DATA[:100]
    assert src.last_move is not None
    assert src.last_route == "readwrite"
    assert [r for r, _ in src.last_move.skipped][:1] == ["copy_file_range"]


def test_transfer_to_file_object(src: FileChannel, tmp_path: Path) -> None:
    p = tmp_path / "dst"
    with open(p, "wb") as f:
        f.write(b"pre")  # buffered: must be flushed before the kernel appends after it
        _check_transfer_to(src, f, lambda: p.read_bytes()[3:], 7, 1000)
        assert src.transfer_to(7, 0, f) == 0
    assert p.read_bytes() == b"pre" + DATA[7:1007]


def test_transfer_to_int_fd(src: FileChannel, tmp_path: Path) -> None:
    p = tmp_path / "dst"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT)
    try:
        _check_transfer_to(src, fd, p.read_bytes, 0, len(DATA))
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(DATA)
    finally:
        os.close(fd)


def test_transfer_to_pipe_fd(src: FileChannel) -> None:
    r, w = os.pipe()
    with open(r, "rb") as reader:
        got = bytearray()

        def run() -> None:
            got.extend(reader.read())

        t = threading.Thread(target=run, daemon=True)
        t.start()
        closed = False

        def end_stream() -> None:
            nonlocal closed
            os.close(w)
            closed = True

        try:
            _check_transfer_to(src, w, _received(end_stream, t, got), 1, len(DATA) - 1)
        finally:
            if not closed:
                os.close(w)
    assert src.last_route == "splice"


def test_transfer_to_subprocess_stdin_and_from_its_stdout(src: FileChannel, tmp_path: Path) -> None:
    # A real child process on both ends: our file goes into its stdin, its stdout comes back into a file.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    with proc:
        assert src.transfer_to(0, len(DATA), proc.stdin) == len(DATA)
        proc.stdin.close()
        with FileChannel.open(tmp_path / "back", "w+") as back:
            assert back.transfer_from(proc.stdout, 0, 10 * len(DATA)) == len(DATA)  # stops at the pipe's EOF
            assert back.last_route in ("splice", "readwrite")
            assert back.position == 0
            assert back.read() == DATA[::-1]
    assert proc.returncode == 0


def test_transfer_to_past_eof_and_count_larger_than_file(src: FileChannel, tmp_path: Path) -> None:
    with FileChannel.open(tmp_path / "dst", "w+") as dst:
        assert src.transfer_to(len(DATA), 10, dst) == 0
        assert src.last_route is not None
        assert src.transfer_to(len(DATA) + 1000, 10, dst) == 0
        assert dst.size() == 0
        assert src.transfer_to(0, 10 * len(DATA), dst) == len(DATA)
        assert src.transfer_to(len(DATA) - 3, 1 << 40, dst) == 3
        assert dst.read(-1, position=0) == DATA + DATA[-3:]


def test_transfer_to_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    a, b = socket.socketpair()
    with FileChannel.open(tmp_path / "empty") as ch, a, b:
        assert ch.transfer_to(0, 100, a) == 0


@pytest.mark.parametrize("route", ["sendfile", "splice", "mmap", "readwrite"])
def test_transfer_to_forced_route(src: FileChannel, route: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        got = bytearray()
        t = _drain(b, got)
        assert src.transfer_to(50, 4000, a, route=route) == 4000
        assert src.last_route == route
        a.shutdown(socket.SHUT_WR)
        t.join(10)
    assert bytes(got) == DATA[50:4050]


def test_transfer_to_non_blocking_socket_returns_early(
    tmp_path: Path, small_tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    big = os.urandom(4 << 20)  # far more than the 64 KiB socket buffers can hold
    p = tmp_path / "big"
    p.write_bytes(big)
    client, conn = small_tcp_pair
    with FileChannel.open(p) as ch:
        client.setblocking(False)
        t0 = time.monotonic()
        n = ch.transfer_to(0, len(big), client)  # nobody reads yet: the slow reader
        assert time.monotonic() - t0 < 5
        assert 0 < n < len(big)
        assert ch.position == 0
        got = bytearray()
        while len(got) < n:
            got += conn.recv(1 << 16)
        assert bytes(got) == big[:n]
        # Resuming at n continues the stream exactly; with the reader draining it eventually completes.
        client.setblocking(True)
        t = _drain(conn, got)
        assert ch.transfer_to(n, len(big) - n, client) == len(big) - n
        client.shutdown(socket.SHUT_WR)
        t.join(20)
    assert bytes(got) == big


def _nonblocking(sock: socket.socket) -> bool:
    return bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)


_NO_TIMEO = bytes(16)  # struct timeval {0, 0}: SO_SNDTIMEO/SO_RCVTIMEO unset


def test_transfer_to_socket_with_timeout_waits_inside_the_kernel_then_is_restored(
    tmp_path: Path, small_tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    # A Python timeout makes the fd O_NONBLOCK; transfer_to makes it blocking with SO_SNDTIMEO for the call, so
    # sendfile sleeps in the kernel: one call for the whole file instead of one per full socket buffer.
    big = os.urandom(4 << 20)  # larger than the socket buffers, so the sender must wait for the reader
    p = tmp_path / "big"
    p.write_bytes(big)
    client, conn = small_tcp_pair
    client.settimeout(10)
    got = bytearray()
    t = _drain(conn, got, delay=0.3)
    with FileChannel.open(p) as ch, observe() as obs:
        t0 = time.monotonic()
        assert ch.transfer_to(0, len(big), client) == len(big)
        assert time.monotonic() - t0 >= 0.25
    assert obs.operations[0].route == "sendfile"
    assert obs.operations[0].syscalls["sendfile"] <= 2
    assert _nonblocking(client) and client.gettimeout() == 10
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16) == _NO_TIMEO
    client.shutdown(socket.SHUT_WR)
    t.join(20)
    assert bytes(got) == big


def test_transfer_to_socket_timeout_expires(tmp_path: Path) -> None:
    big = os.urandom(4 << 20)  # more than a Unix socketpair buffers (~200 KiB each way)
    p = tmp_path / "big"
    p.write_bytes(big)
    a, b = socket.socketpair()
    with a, b, FileChannel.open(p) as ch:
        a.settimeout(0.2)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as ei:
            ch.transfer_to(0, len(big), a)  # nobody ever reads
        assert time.monotonic() - t0 < 5
        assert 0 < ei.value.bytes_moved < len(big)  # type: ignore[attr-defined]  # where it stopped


def test_transfer_from_socket_with_timeout_expires_and_restores_the_socket(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    with a, b, FileChannel.open(tmp_path / "dst", "w+") as ch:
        b.sendall(b"x" * 1000)  # some bytes, then silence
        a.settimeout(0.2)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no progress in 0\.2s") as ei:
            ch.transfer_from(a, 0, 1 << 20)
        assert 0.15 < time.monotonic() - t0 < 5
        assert ei.value.bytes_moved == 1000  # type: ignore[attr-defined]
        assert ch.read(1000, position=0) == b"x" * 1000
        assert _nonblocking(a) and a.gettimeout() == 0.2
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) == _NO_TIMEO


def test_transfer_from_socket_with_timeout_keeps_going_while_bytes_flow(tmp_path: Path) -> None:
    # Each stall is shorter than the timeout: the transfer completes although the whole takes longer.
    a, b = socket.socketpair()
    chunks = [os.urandom(100_000) for _ in range(5)]

    def trickle() -> None:
        for c in chunks:
            time.sleep(0.1)
            b.sendall(c)
        b.close()

    t = threading.Thread(target=trickle, daemon=True)
    with a, FileChannel.open(tmp_path / "dst", "w+") as ch:
        a.settimeout(0.4)
        t.start()
        assert ch.transfer_from(a, 0, 1 << 20) == 500_000
        assert ch.read(500_000, position=0) == b"".join(chunks)
    t.join(5)


# --- transfer_from ------------------------------------------------------------------------------------------


def _check_transfer_from(dst: FileChannel, source: Any, at: int, count: int, expected: bytes) -> None:
    dst.position = 2
    n = dst.transfer_from(source, at, count)
    assert n == len(expected)
    assert dst.position == 2  # transfer_from never moves the channel's own position
    assert dst.last_route in routes.ROUTES
    assert dst.read(n, position=at) == expected


def test_transfer_from_socket(tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, conn = tcp_pair
    client.sendall(DATA)
    client.shutdown(socket.SHUT_WR)
    with FileChannel.open(tmp_path / "dst", "w+") as dst:
        _check_transfer_from(dst, conn, 10, 5000, DATA[:5000])
        _check_transfer_from(dst, conn, 5010, 1 << 30, DATA[5000:])  # stops at the peer's EOF
        assert dst.size() == 10 + len(DATA)
        assert dst.read(10, position=0) == bytes(10)


def test_transfer_from_socket_channel(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    with SocketChannel(a) as ch, b, FileChannel.open(tmp_path / "dst", "w+") as dst:
        b.sendall(DATA)
        b.close()
        _check_transfer_from(dst, ch, 0, len(DATA), DATA)


def test_transfer_from_non_blocking_socket_without_data(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    with a, b, FileChannel.open(tmp_path / "dst", "w+") as dst:
        a.setblocking(False)
        t0 = time.monotonic()
        assert dst.transfer_from(a, 0, 100) == 0
        assert time.monotonic() - t0 < 2
        b.sendall(b"abc")
        assert dst.transfer_from(a, 0, 100) == 3
        assert dst.read() == b"abc"


def test_transfer_from_file_channel_reads_at_its_position(src: FileChannel, tmp_path: Path) -> None:
    src.position = 1000
    with FileChannel.open(tmp_path / "dst", "w+") as dst:
        _check_transfer_from(dst, src, 0, 500, DATA[1000:1500])
        assert src.position == 1500  # a source channel is read from, and advances, its own position
        _check_transfer_from(dst, src, 500, 1 << 30, DATA[1500:])
        assert src.position == len(DATA)


def test_transfer_from_file_object_and_int_fd(src_path: Path, tmp_path: Path) -> None:
    with FileChannel.open(tmp_path / "dst", "w+") as dst:
        with open(src_path, "rb") as f:
            f.seek(3)
            _check_transfer_from(dst, f, 0, 7, DATA[3:10])
        fd = os.open(src_path, os.O_RDONLY)
        try:
            _check_transfer_from(dst, fd, 7, len(DATA), DATA)
            assert os.lseek(fd, 0, os.SEEK_CUR) == len(DATA)
        finally:
            os.close(fd)


def test_transfer_from_pipe_fd(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        os.write(w, DATA[:4000])  # fits in the pipe buffer
        os.close(w)
        w = -1
        with FileChannel.open(tmp_path / "dst", "w+") as dst:
            _check_transfer_from(dst, r, 100, 10_000, DATA[:4000])
            assert dst.last_route == "splice"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_transfer_from_forced_readwrite(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    with a, b, FileChannel.open(tmp_path / "dst", "w+") as dst:
        b.sendall(DATA[:1000])
        b.close()
        assert dst.transfer_from(a, 0, 1000, route="readwrite") == 1000
        assert dst.last_route == "readwrite"
        assert dst.read() == DATA[:1000]
