"""Each route moved for real between real files, sockets and pipes; errors injected by patching the syscall."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import Drain, make_file

from zcopy import RouteUnavailable, TruncatedFileError, routes
from zcopy.routes import copy_file_range as cfr_mod
from zcopy.routes import move
from zcopy.routes import sendfile as sendfile_mod
from zcopy.routes import splice as splice_mod

SIZE = 3 * 1024 * 1024 + 123  # several pipe-fulls and buffer-fulls, not a multiple of any of them
TO_SOCKET = ["sendfile", "splice", "mmap", "readwrite"]
FILE_TO_FILE = ["copy_file_range", "sendfile", "splice", "mmap", "readwrite"]


def _open_r(path: Path) -> int:
    return os.open(path, os.O_RDONLY)


@pytest.mark.parametrize("route", TO_SOCKET)
def test_file_to_socket(tmp_path: Path, drain: Drain, route: str) -> None:
    data = make_file(tmp_path / "src", SIZE)
    fd = _open_r(tmp_path / "src")
    sock = drain.connect()
    try:
        m = move(fd, sock.fileno(), 0, SIZE, route=route)
    finally:
        sock.close()
        os.close(fd)
    drain.wait()
    assert (m.nbytes, m.route, m.src_kind, m.dst_kind) == (SIZE, route, "file", "socket")
    assert bytes(drain.data) == data


@pytest.mark.parametrize("route", ["splice", "readwrite"])
def test_socket_to_file(tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket], route: str) -> None:
    client, server = tcp_pair
    data = os.urandom(SIZE)
    t = threading.Thread(target=lambda: (client.sendall(data), client.shutdown(socket.SHUT_WR)))
    t.start()
    fd = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT)
    try:
        m = move(server.fileno(), fd, None, SIZE + 1000, route=route, dst_offset=10)
    finally:
        t.join()
        os.close(fd)
    assert (m.nbytes, m.route, m.status) == (SIZE, route, "eof")
    assert (tmp_path / "dst").read_bytes() == b"\0" * 10 + data


@pytest.mark.parametrize("route", FILE_TO_FILE)
def test_file_to_file_positional(tmp_path: Path, route: str) -> None:
    data = make_file(tmp_path / "src", SIZE)
    src = _open_r(tmp_path / "src")
    dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT)
    try:
        m = move(src, dst, 100, SIZE, route=route, dst_offset=7)
        assert os.lseek(dst, 0, os.SEEK_CUR) == 0, "a positional target keeps its file position"
        assert os.lseek(src, 0, os.SEEK_CUR) == 0
    finally:
        os.close(src)
        os.close(dst)
    assert (m.nbytes, m.route) == (SIZE - 100, route)
    assert (tmp_path / "dst").read_bytes() == b"\0" * 7 + data[100:]


def test_file_source_without_offset_uses_and_advances_its_position(tmp_path: Path) -> None:
    data = make_file(tmp_path / "src", 10000)
    src = _open_r(tmp_path / "src")
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        os.lseek(src, 1000, os.SEEK_SET)
        m = move(src, dst, None, 500)
        assert os.lseek(src, 0, os.SEEK_CUR) == 1500
    finally:
        os.close(src)
        os.close(dst)
    assert m.nbytes == 500
    assert (tmp_path / "dst").read_bytes() == data[1000:1500]


@pytest.mark.parametrize("route", ["splice", "sendfile", "readwrite"])
def test_file_to_pipe_and_back(tmp_path: Path, route: str) -> None:
    data = make_file(tmp_path / "src", SIZE)
    r, w = os.pipe()
    out = bytearray()

    def reader() -> None:
        while chunk := os.read(r, 1 << 20):
            out.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    src = _open_r(tmp_path / "src")
    try:
        m = move(src, w, 0, SIZE, route=route)
    finally:
        os.close(w)
        t.join()
        os.close(r)
        os.close(src)
    assert m.nbytes == SIZE and bytes(out) == data


def test_pipe_to_file_by_splice(tmp_path: Path) -> None:
    r, w = os.pipe()
    data = os.urandom(SIZE)
    t = threading.Thread(target=lambda: (os.write(w, data) if False else _write_all(w, data), os.close(w)))
    t.start()
    dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT)
    try:
        m = move(r, dst, None, 1 << 40)
    finally:
        t.join()
        os.close(r)
        os.close(dst)
    assert (m.route, m.nbytes, m.status) == ("splice", SIZE, "eof")
    assert (tmp_path / "dst").read_bytes() == data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def test_default_routes_follow_the_table(tmp_path: Path, drain: Drain) -> None:
    make_file(tmp_path / "src", 1000)
    src = _open_r(tmp_path / "src")
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    sock = drain.connect()
    try:
        assert move(src, dst, 0, 1000).route == "copy_file_range"
        assert move(src, sock.fileno(), 0, 1000).route == "sendfile"
    finally:
        sock.close()
        os.close(src)
        os.close(dst)


# --- > 4 GiB and the per-call cap --------------------------------------------------------------------------

BIG = (5 << 30) + 123  # over 4 GiB: a 32-bit count would wrap


@pytest.fixture
def sparse_big(tmp_path: Path) -> Path:
    p = tmp_path / "sparse"
    with open(p, "wb") as f:
        f.seek(BIG - 3)
        f.write(b"end")
    return p


@pytest.mark.parametrize("route", ["sendfile", "splice"])
def test_over_4gib_to_dev_null(sparse_big: Path, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.sendfile if route == "sendfile" else os.splice

    def spy(*args: int) -> int:
        calls.append(args[3] if route == "sendfile" else args[2])
        return real(*args)

    monkeypatch.setattr(os, route, spy)
    src = _open_r(sparse_big)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        m = move(src, null, 0, BIG + 10**6, route=route)
    finally:
        os.close(src)
        os.close(null)
    assert m.nbytes == BIG
    assert max(calls) <= 0x7FFFF000
    if route == "sendfile":
        assert len(calls) >= 3  # 5 GiB cannot go in fewer than 3 capped calls


def test_copy_file_range_caps_each_call_and_counts_past_4gib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The loop arithmetic without writing 5 GiB: the syscall is replaced by one that reports full progress.
    calls: list[tuple[int, int | None]] = []

    def fake(src: int, dst: int, count: int, offset_src: int | None = None, offset_dst: int | None = None) -> int:
        calls.append((count, offset_src))
        return count

    p = tmp_path / "sparse"
    with open(p, "wb") as f:
        f.truncate(BIG)
    monkeypatch.setattr(os, "copy_file_range", fake)
    src = _open_r(p)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        m = move(src, dst, 0, BIG, route="copy_file_range", dst_offset=0)
    finally:
        os.close(src)
        os.close(dst)
    assert m.nbytes == BIG
    assert all(c <= 0x7FFFF000 for c, _ in calls)
    assert [o for _, o in calls] == [0, 0x7FFFF000, 2 * 0x7FFFF000]


# --- fault injection -----------------------------------------------------------------------------------------


def _fail_on(call_no: int, err: int, real):  # type: ignore[no-untyped-def]
    state = {"n": 0}

    def fake(*args, **kw):  # type: ignore[no-untyped-def]
        state["n"] += 1
        if state["n"] == call_no:
            raise OSError(err, os.strerror(err))
        return real(*args, **kw)

    return fake


def _send_file(tmp_path: Path, drain: Drain, **kw) -> tuple[object, bytes]:  # type: ignore[no-untyped-def]
    data = make_file(tmp_path / "src", SIZE)
    fd = _open_r(tmp_path / "src")
    sock = drain.connect()
    try:
        return move(fd, sock.fileno(), 0, SIZE, **kw), data
    finally:
        sock.close()
        os.close(fd)


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK, errno.EXDEV])
def test_give_up_errno_on_first_call_falls_back(
    tmp_path: Path, drain: Drain, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    monkeypatch.setattr(os, "sendfile", _fail_on(1, err, os.sendfile))
    m, data = _send_file(tmp_path, drain)
    drain.wait()
    assert m.route == "splice"  # type: ignore[attr-defined]
    assert m.skipped[0][0] == "sendfile" and errno.errorcode[err] in m.skipped[0][1]  # type: ignore[attr-defined]
    assert bytes(drain.data) == data, "the fallback really moved the bytes"


def test_give_up_errno_after_progress_raises(tmp_path: Path, drain: Drain, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.sendfile
    monkeypatch.setattr(os, "sendfile", _fail_on(2, errno.EINVAL, lambda o, i, off, n: real(o, i, off, min(n, 65536))))
    with pytest.raises(OSError) as ei:
        _send_file(tmp_path, drain)
    assert ei.value.errno == errno.EINVAL
    assert ei.value.bytes_moved == 65536  # type: ignore[attr-defined]


def test_give_up_after_progress_in_wait_mode_raises_instead_of_switching_routes(
    tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """wait=True: sendfile moves bytes, the socket fills (EAGAIN), move() waits, and then sendfile refuses
    (EINVAL). Another route would resend or skip bytes mid-stream, so move() raises with what it moved."""
    client, server = tcp_pair
    small_buffers(client, server)
    size = 8 << 20  # far more than the fixed 64 KiB buffers: the first EAGAIN comes long before the end
    data = make_file(tmp_path / "src", size)
    client.setblocking(False)
    real = os.sendfile
    blocked = threading.Event()

    def refuses_after_eagain(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        if blocked.is_set():
            raise OSError(errno.EINVAL, "refused after a wait (test)")
        try:
            return real(out_fd, in_fd, offset, count)
        except BlockingIOError:
            blocked.set()
            raise

    monkeypatch.setattr(os, "sendfile", refuses_after_eagain)
    got = bytearray()

    def reader() -> None:
        while chunk := server.recv(1 << 16):
            got.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    fd = _open_r(tmp_path / "src")
    try:
        with pytest.raises(OSError) as ei:
            move(fd, client.fileno(), 0, size, wait=True, timeout=30)
    finally:
        client.shutdown(socket.SHUT_WR)
        t.join()
        os.close(fd)
    assert blocked.is_set()  # the wait really happened before the refusal
    moved = ei.value.bytes_moved  # type: ignore[attr-defined]
    assert 0 < moved < size and ei.value.errno == errno.EIO
    assert bytes(got) == data[:moved]  # exactly what was reported: nothing resent, nothing skipped


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO, errno.EPIPE])
def test_hard_errors_always_raise(tmp_path: Path, drain: Drain, monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    monkeypatch.setattr(os, "sendfile", _fail_on(1, err, os.sendfile))
    with pytest.raises(OSError) as ei:
        _send_file(tmp_path, drain)
    assert ei.value.errno == err


def test_enospc_in_copy_file_range_is_not_hidden_by_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "copy_file_range", _fail_on(1, errno.ENOSPC, os.copy_file_range))
    make_file(tmp_path / "src", 1000)
    src = _open_r(tmp_path / "src")
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as ei:
            move(src, dst, 0, 1000)
    finally:
        os.close(src)
        os.close(dst)
    assert ei.value.errno == errno.ENOSPC


def test_fallback_false_raises_route_unavailable(tmp_path: Path, drain: Drain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sendfile", _fail_on(1, errno.EINVAL, os.sendfile))
    with pytest.raises(RouteUnavailable) as ei:
        _send_file(tmp_path, drain, fallback=False)
    assert ei.value.route == "sendfile" and "EINVAL" in ei.value.reason


def test_forced_route_that_cannot_serve_the_pair(tmp_path: Path, drain: Drain) -> None:
    with pytest.raises(RouteUnavailable) as ei:
        _send_file(tmp_path, drain, route="copy_file_range")
    assert "regular files" in str(ei.value)


def test_forced_sendfile_from_a_socket(tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    _, server = tcp_pair
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(RouteUnavailable, match="sendfile"):
            move(server.fileno(), dst, None, 10, route="sendfile")
    finally:
        os.close(dst)


def test_copy_file_range_zero_at_offset_zero_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "copy_file_range", lambda *a, **k: 0)
    data = make_file(tmp_path / "src", 5000)
    src = _open_r(tmp_path / "src")
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        m = move(src, dst, 0, 5000, dst_offset=0)
    finally:
        os.close(src)
        os.close(dst)
    assert m.route == "sendfile" and "returned 0 at offset 0" in m.skipped[0][1]
    assert (tmp_path / "dst").read_bytes() == data


def test_procfs_file_is_copied_by_a_reading_route(tmp_path: Path) -> None:
    # /proc files report size 0 yet have data; copy_file_range/sendfile refuse them, readwrite reads to EOF.
    src = os.open("/proc/self/maps", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT)
    try:
        m = move(src, dst, 0, 1 << 30, dst_offset=0)
    finally:
        os.close(src)
        os.close(dst)
    assert m.nbytes > 100 and m.status == "eof"
    assert m.route in ("sendfile", "readwrite")
    assert next(r for r, _ in m.skipped) == "copy_file_range"
    assert b"[stack]" in (tmp_path / "dst").read_bytes()


@pytest.mark.parametrize("route", [None, "copy_file_range", "sendfile", "splice", "mmap", "readwrite"])
def test_empty_file_moves_by_the_first_route_without_a_fallback(tmp_path: Path, route: str | None) -> None:
    # Size 0 also describes procfs files (above); an empty regular file must not be taken for one.
    (tmp_path / "empty").write_bytes(b"")
    src = _open_r(tmp_path / "empty")
    dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT)
    try:
        m = move(src, dst, 0, 1 << 30, dst_offset=0, route=route)
        first = move(src, dst, 0, 1 << 30, dst_offset=0, fallback=False)
    finally:
        os.close(src)
        os.close(dst)
    assert (m.nbytes, m.skipped) == (0, []) and m.route == (route or "copy_file_range")
    assert (first.nbytes, first.route, first.skipped) == (0, "copy_file_range", [])


@pytest.mark.parametrize("case", ["src write-only", "dst read-only", "offset on a pipe"])
def test_a_bad_fd_is_the_callers_bug_raised_by_the_first_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    # EBADF/ESPIPE are not "cannot do this pair": no other route may be tried after them.
    from zcopy.routes import readwrite as readwrite_mod

    tried: list[str] = []
    for mod in (cfr_mod, sendfile_mod, splice_mod, readwrite_mod):
        monkeypatch.setattr(mod, "move", lambda *a, _m=mod, _f=mod.move, **k: (tried.append(_m.NAME), _f(*a, **k))[1])
    make_file(tmp_path / "src", 10_000)
    fds = [os.open(tmp_path / "src", os.O_WRONLY if case == "src write-only" else os.O_RDONLY),
           os.open(tmp_path / "dst", os.O_RDONLY | os.O_CREAT if case == "dst read-only" else os.O_RDWR | os.O_CREAT)]
    r, w = os.pipe()
    fds += [r, w]
    os.write(w, b"x" * 100)
    src = r if case == "offset on a pipe" else fds[0]
    want = errno.ESPIPE if case == "offset on a pipe" else errno.EBADF
    try:
        with pytest.raises(OSError) as ei:
            move(src, fds[1], 5 if src == r else 0, 100, dst_offset=0)
    finally:
        for fd in fds:
            os.close(fd)
    assert ei.value.errno == want and len(tried) == 1, tried


def test_copy_file_range_gives_up_on_an_o_append_target(tmp_path: Path) -> None:
    data = make_file(tmp_path / "src", 10_000)
    src = _open_r(tmp_path / "src")
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        m = move(src, dst, 0, 10_000)
    finally:
        os.close(src)
        os.close(dst)
    assert m.skipped[0] == ("copy_file_range", "EBADF, copy_file_range refuses an O_APPEND target")
    assert (tmp_path / "dst").read_bytes() == data


# --- truncation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", TO_SOCKET)
def test_source_truncated_during_transfer(tmp_path: Path, route: str) -> None:
    size = 32 << 20
    make_file(tmp_path / "src", size)
    listener = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(listener.getsockname())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    conn, _ = listener.accept()

    def slow_reader_that_truncates() -> None:
        got = 0
        while got < (1 << 20):
            got += len(conn.recv(65536))
        os.truncate(tmp_path / "src", 2 << 20)
        while conn.recv(1 << 20):
            pass

    t = threading.Thread(target=slow_reader_that_truncates)
    t.start()
    fd = _open_r(tmp_path / "src")
    started = time.monotonic()
    try:
        with pytest.raises(TruncatedFileError) as ei:
            move(fd, sock.fileno(), 0, size, route=route, name="src-file")
    finally:
        sock.close()
        t.join()
        conn.close()
        listener.close()
        os.close(fd)
    assert time.monotonic() - started < 20, "no busy loop"
    e = ei.value
    assert e.path == "src-file" and e.expected_end == size
    assert 1 << 20 <= e.position <= 3 << 20 and e.bytes_moved == e.position


def test_file_that_grows_is_not_an_error(tmp_path: Path) -> None:
    make_file(tmp_path / "src", 1000)
    src = _open_r(tmp_path / "src")
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        with open(tmp_path / "src", "ab") as f:
            f.write(b"x" * 10)
        assert move(src, dst, 0, 5000).nbytes == 1010
    finally:
        os.close(src)
        os.close(dst)


# --- non-blocking targets and sources -----------------------------------------------------------------------


@pytest.mark.parametrize("route", TO_SOCKET)
def test_nonblocking_target_returns_what_moved(
    tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket], route: str
) -> None:
    client, server = tcp_pair
    small_buffers(client, server)
    size = 64 << 20  # far more than the (small, fixed) socket buffers hold with nobody reading
    data = make_file(tmp_path / "src", size)
    client.setblocking(False)
    fd = _open_r(tmp_path / "src")
    try:
        first = move(fd, client.fileno(), 0, size, route=route)
        assert 0 < first.nbytes < size and first.status == "dst_again"
        received = bytearray()
        while len(received) < first.nbytes:
            received += server.recv(1 << 20)
        assert bytes(received[: first.nbytes]) == data[: first.nbytes]
    finally:
        os.close(fd)


def test_nonblocking_source_with_nothing_returns_zero(
    tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    _, server = tcp_pair
    server.setblocking(False)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        m = move(server.fileno(), dst, None, 1000, dst_offset=0)
    finally:
        os.close(dst)
    assert (m.nbytes, m.status, m.route) == (0, "src_again", "splice")


def test_wait_mode_rides_out_eagain(tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    size = 16 << 20
    data = make_file(tmp_path / "src", size)
    client.setblocking(False)
    got = bytearray()

    def reader() -> None:
        while len(got) < size:
            got.extend(server.recv(1 << 20))

    t = threading.Thread(target=reader)
    t.start()
    fd = _open_r(tmp_path / "src")
    try:
        m = move(fd, client.fileno(), 0, size, wait=True, timeout=30)
    finally:
        t.join()
        os.close(fd)
    assert m.nbytes == size and bytes(got) == data


def test_splice_refused_at_target_salvages_stream_bytes(
    tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bytes already pulled from a socket into splice's pipe cannot be put back: they are written, then the
    # next route continues; nothing is lost or duplicated.
    client, server = tcp_pair
    data = os.urandom(3 << 20)
    real = os.splice
    calls = {"n": 0}

    def refuse_second(*a: int) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EINVAL, "refused")
        return real(*a)

    monkeypatch.setattr(os, "splice", refuse_second)
    t = threading.Thread(target=lambda: (client.sendall(data), client.shutdown(socket.SHUT_WR)))
    t.start()
    dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT)
    try:
        m = move(server.fileno(), dst, None, len(data) + 1, dst_offset=0)
    finally:
        t.join()
        os.close(dst)
    assert m.route == "readwrite" and m.skipped[0][0] == "splice"
    assert (tmp_path / "dst").read_bytes() == data


def test_route_modules_report_their_names() -> None:
    assert (sendfile_mod.NAME, splice_mod.NAME, cfr_mod.NAME) == ("sendfile", "splice", "copy_file_range")


def test_splice_keeps_one_pipe_across_eagain_waits(
    tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    from zcopy import FileChannel, observe

    client, server = tcp_pair
    server.settimeout(10)  # a Python timeout: the fd is non-blocking, so every gap is an EAGAIN + poll
    bursts = [os.urandom(100_000) for _ in range(5)]
    receiver = threading.get_native_id()
    dst = tmp_path / "dst"

    def sender() -> None:
        sent = 0
        for b in bursts:
            client.sendall(b)
            sent += len(b)
            # The next burst only once the receiver has written all of this one and sleeps: it is then waiting
            # for data, so every gap is a real wait (no 50 ms guess that a busy machine could overrun).
            end = time.monotonic() + 30
            while not (dst.exists() and dst.stat().st_size == sent and _sleeping(receiver)):
                assert time.monotonic() < end, "receiver never caught up"
                time.sleep(0.001)
        client.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=sender)
    t.start()
    with FileChannel.open(dst, "w") as ch, observe() as obs:
        n = ch.transfer_from(server, 0, 10**9)
    t.join()
    calls = obs.operations[0].syscalls
    assert n == 500_000 and (tmp_path / "dst").read_bytes() == b"".join(bursts)
    assert obs.operations[0].route == "splice" and calls["splice"] > 5
    assert calls.get("pipe2", 0) <= 1, calls  # not one pipe per wait


def _sleeping(tid: int) -> bool:
    """Is thread ``tid`` of this process asleep in the kernel (state S), i.e. waiting rather than running?"""
    stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] == "S"


def small_buffers(client: socket.socket, server: socket.socket) -> None:
    """Fixed 64 KiB socket buffers (no autotuning): "more than the buffers hold" is then true on any machine,
    whatever its tcp_rmem/tcp_wmem maxima."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)


def test_a_pipe_left_holding_bytes_is_not_reused(tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, _server = tcp_pair
    small_buffers(client, _server)
    make_file(tmp_path / "big", 16 << 20)
    client.setblocking(False)
    fd = _open_r(tmp_path / "big")
    try:
        first = move(fd, client.fileno(), 0, 16 << 20, route="splice")
        assert first.status == "dst_again"  # the pipe may still hold file bytes the socket refused
    finally:
        os.close(fd)
    data = make_file(tmp_path / "src", 300_000, seed=7)
    src = _open_r(tmp_path / "src")
    dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT)
    try:
        assert move(src, dst, 0, 300_000, route="splice", dst_offset=0).nbytes == 300_000
    finally:
        os.close(src)
        os.close(dst)
    assert (tmp_path / "dst").read_bytes() == data


def test_user_crossings_count_the_hops_through_user_space() -> None:
    assert routes.copy_model("readwrite", "socket", "file").user_crossings == 2
    assert routes.copy_model("mmap", "file", "socket").user_crossings == 1
    zero_copy = [("splice", "socket", "file"), ("sendfile", "file", "socket"), ("copy_file_range", "file", "file")]
    for route, src, dst in zero_copy:
        assert routes.copy_model(route, src, dst).user_crossings == 0


def test_require_checks_a_forced_route_up_front() -> None:
    routes.require(None, "socket", "file")
    routes.require("readwrite", "socket", "file")
    with pytest.raises(RouteUnavailable, match="copy_file_range"):
        routes.require("copy_file_range", "file", "socket")
    with pytest.raises(ValueError, match="unknown route"):
        routes.require("teleport", "file", "file")


def test_public_names_are_public_and_private_ones_stay_in_their_module() -> None:
    # GiveUp never leaves move(); the hop kinds a copy model names are what lab/ and callers draw with.
    assert "GiveUp" not in routes.__all__ and {"CPU", "DMA", "REF", "CopyModel", "Hop"} <= set(routes.__all__)
    src = Path(routes.__file__).parent.parent
    outside = [str(p.relative_to(src)) for p in src.rglob("*.py")
               if p.parent.name != "routes" and "routes._base" in p.read_text()]
    assert outside == []
