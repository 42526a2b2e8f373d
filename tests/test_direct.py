"""The direct route (O_DIRECT through one aligned buffer): every size class, every pair, refusals, errors."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Drain, make_file
from direct_fs import dio_offset, ramfs_dir, small_ext4, tmpfs_dir

import zcopy
from zcopy import FileChannel, RouteUnavailable, TruncatedFileError, observe, routes
from zcopy.routes import direct

MiB = 1 << 20
SIZES = [0, 1, 511, 4095, 4096, 4097, MiB - 1, MiB, MiB + 1, direct.CHUNK + 3 * MiB + 7]


def _flags(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL)


@pytest.mark.parametrize("size", SIZES)
def test_file_to_file_every_size(ddir: Path, size: int) -> None:
    data = make_file(ddir / "src", size, seed=size)
    a = dio_offset(ddir / "src")
    with FileChannel.open(ddir / "src") as src, FileChannel.open(ddir / "dst", "w") as dst:
        before = (_flags(src.fileno()), _flags(dst.fileno()))
        with observe() as obs:
            n = src.transfer_to(0, size, dst, route="direct")
        assert (_flags(src.fileno()), _flags(dst.fileno())) == before  # the channels are left as found
        assert dst.position == size  # a target file is written at its position, which advances
    assert n == size
    assert (ddir / "dst").read_bytes() == data
    op = obs.operations[0]
    assert op.route == "direct"
    # DMA into and out of user memory is no CPU copy: only the tail shorter than one block went through the page
    # cache (read, then written: twice).
    assert op.user_bytes == 2 * (size % a)


def test_copy_model_shapes() -> None:
    ff = routes.copy_model("direct", "file", "file")
    assert ff.render() == "disk ─DMA O_DIRECT read→ user buffer ─DMA O_DIRECT write→ disk"
    assert (ff.cpu_copies, ff.dma_copies) == (0, 2)
    sf = routes.copy_model("direct", "socket", "file")
    assert sf.render().startswith("NIC ─DMA→ socket buffer ─CPU recv→ user buffer")
    assert (sf.cpu_copies, sf.dma_copies) == (1, 2)
    assert routes.copy_model("direct", "file", "memory").render() == "disk ─DMA O_DIRECT read→ user buffer"


@pytest.mark.parametrize(("src_pos", "dst_pos"), [(3, 0), (0, 700), (700, 700), (4096, 4096 + 512), (5, 9000)])
def test_unaligned_positions(ddir: Path, src_pos: int, dst_pos: int) -> None:
    size = 3 * MiB + 123
    data = make_file(ddir / "src", size)
    old = make_file(ddir / "dst", dst_pos + 10, seed=7)
    with FileChannel.open(ddir / "src") as src, FileChannel.open(ddir / "dst", "r+") as dst:
        n = src.transfer_to(src_pos, size, _At(dst, dst_pos), route="direct")
    assert n == size - src_pos
    got = (ddir / "dst").read_bytes()
    assert got[:dst_pos] == old[:dst_pos]
    assert got[dst_pos:] == data[src_pos:]


class _At:
    """A target file positioned at `pos` (transfer_to writes at the target's own position)."""

    def __init__(self, ch: FileChannel, pos: int) -> None:
        ch.position = pos
        self.ch = ch

    def fileno(self) -> int:
        return self.ch.fileno()


def test_file_to_socket_and_pipe(ddir: Path, drain: Drain) -> None:
    size = 2 * MiB + 5
    data = make_file(ddir / "src", size)
    sock = drain.connect()
    with FileChannel.open(ddir / "src") as src, observe() as obs:
        assert src.transfer_to(0, size, sock, route="direct") == size
        sock.close()
    drain.wait()
    assert bytes(drain.data) == data
    # O_DIRECT read (no copy), send (one CPU copy of every byte); the tail also went through the page cache.
    assert obs.operations[0].user_bytes == size + size % dio_offset(ddir / "src")
    r, w = os.pipe()
    out = bytearray()
    t = threading.Thread(target=lambda: out.extend(_read_all(r)))
    t.start()
    with FileChannel.open(ddir / "src") as src:
        assert src.transfer_to(0, size, w, route="direct") == size
    os.close(w)
    t.join()
    os.close(r)
    assert bytes(out) == data


def _read_all(fd: int) -> bytes:
    chunks = []
    while b := os.read(fd, 1 << 20):
        chunks.append(b)
    return b"".join(chunks)


@pytest.mark.parametrize("size", [0, 1, 4097, direct.CHUNK + MiB + 1])
def test_socket_to_file_with_chunk_hook(ddir: Path, size: int) -> None:
    data = os.urandom(size)
    seen: list[bytes] = []
    with _fed(data) as s, FileChannel.open(ddir / "dst", "w") as dst, observe() as obs:
        n = dst.transfer_from(s, 0, size + 10, route="direct", on_chunk=lambda v: seen.append(bytes(v)))
    assert n == size
    assert (ddir / "dst").read_bytes() == data
    assert b"".join(seen) == data  # every byte shown to the hook once, in order
    assert obs.operations[0].route == "direct"
    # recv copies every byte into the buffer (CPU), the O_DIRECT write copies none; the tail is written buffered.
    assert obs.operations[0].user_bytes == size + size % dio_offset(ddir / "dst")


def test_pipe_to_file_and_hook_with_fallback_routes(ddir: Path) -> None:
    data = os.urandom(MiB + 3)
    r, w = os.pipe()
    t = threading.Thread(target=lambda: (os.write(w, data), os.close(w)))
    t.start()
    seen = bytearray()
    with FileChannel.open(ddir / "dst", "w") as dst:
        # No route forced: with a hook, splice (bytes never in user space) is skipped with its reason.
        n = dst.transfer_from(r, 0, len(data), on_chunk=seen.extend)
        assert dst.last_move is not None
        assert ("splice", "on_chunk needs the bytes in a user buffer; splice moves them inside the kernel") in (
            dst.last_move.skipped
        )
    t.join()
    os.close(r)
    assert n == len(data) and bytes(seen) == data
    assert (ddir / "dst").read_bytes() == data


def test_socket_to_socket_is_not_a_direct_pair(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    c, s = tcp_pair
    with pytest.raises(RouteUnavailable, match="regular file at one end"):
        routes.move(s.fileno(), c.fileno(), None, 10, route="direct")


def test_dirty_pages_in_the_source_are_read(ddir: Path) -> None:
    """O_DIRECT reads what was written, even while it is still only in the page cache (the kernel writes the
    range back before the DMA read)."""
    data = os.urandom(3 * MiB + 1)
    fd = os.open(ddir / "src", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, data)  # no fsync: dirty pages
    os.close(fd)
    zcopy.copy(ddir / "src", ddir / "dst", route="direct")
    assert (ddir / "dst").read_bytes() == data
    assert bytes(zcopy.read_file(ddir / "src", direct=True)) == data


def test_direct_channel_open(ddir: Path) -> None:
    make_file(ddir / "src", 3 * 4096)
    with FileChannel.open(ddir / "src", direct=True) as ch:
        assert ch.direct and _flags(ch.fileno()) & os.O_DIRECT
        buf = zcopy.aligned_buffer(4096)
        assert ch.readinto(buf, 4096) == 4096
        assert bytes(buf) == (ddir / "src").read_bytes()[4096:8192]
        # Transfers from a direct channel prefer the direct route, and leave the channel direct.
        with FileChannel.open(ddir / "dst", "w") as dst:
            assert ch.transfer_to(0, 3 * 4096, dst) == 3 * 4096
            assert ch.last_route == "direct"
        assert _flags(ch.fileno()) & os.O_DIRECT


# ---------------------------------------------------------------- refusals


def test_tmpfs_falls_back_with_the_reason() -> None:
    with tmpfs_dir() as d:
        data = make_file(d / "src", 2 * MiB + 1)
        with FileChannel.open(d / "src") as src, FileChannel.open(d / "dst", "w") as dst:
            fd_flags = _flags(src.fileno())
            moved = routes.move(src.fileno(), dst.fileno(), 0, len(data), dst_offset=0, prefer="direct")
            assert _flags(src.fileno()) == fd_flags
        assert moved.route != "direct"
        assert moved.skipped[0][0] == "direct" and "tmpfs keeps files in the page cache" in moved.skipped[0][1]
        assert (d / "dst").read_bytes() == data
        with (
            FileChannel.open(d / "src") as src,
            FileChannel.open(d / "dst", "w") as dst,
            pytest.raises(RouteUnavailable, match="tmpfs"),
        ):
            src.transfer_to(0, len(data), dst, route="direct")
        with pytest.raises(RouteUnavailable, match="tmpfs"):
            zcopy.read_file(d / "src", direct=True)
        with observe() as obs:
            assert bytes(zcopy.read_file(d / "src")) == data
        assert obs.operations[0].route == "readwrite"
        assert "tmpfs" in obs.operations[0].skipped[0][1]


def test_einval_file_system_refuses() -> None:
    """ramfs answers O_DIRECT with EINVAL: the route gives up (nothing moved), forcing it is RouteUnavailable."""
    with ramfs_dir() as d:
        data = make_file(d / "src", 5000)
        with pytest.raises(OSError, match="does not support O_DIRECT") as exc:
            FileChannel.open(d / "src", direct=True)
        assert exc.value.errno == errno.EINVAL
        with (
            FileChannel.open(d / "src") as src,
            FileChannel.open(d / "dst", "w") as dst,
            pytest.raises(RouteUnavailable),
        ):
            src.transfer_to(0, len(data), dst, route="direct")
        # ramfs is one of the page-cache file systems: refused by name before O_DIRECT is even tried.
        assert zcopy.copy(d / "src", d / "dst") == len(data)


def test_einval_from_fcntl_gives_up(ddir: Path) -> None:
    """A procfs source refuses O_DIRECT with EINVAL at F_SETFL: direct gives up, the next route moves the bytes."""
    src = os.open("/proc/self/status", os.O_RDONLY)
    try:
        with FileChannel.open(ddir / "dst", "w") as dst:
            moved = routes.move(src, dst.fileno(), 0, 1 << 20, dst_offset=0, prefer="direct")
    finally:
        os.close(src)
    assert moved.route != "direct" and moved.nbytes > 0
    assert moved.skipped[0][0] == "direct" and moved.skipped[0][1].startswith("EINVAL")


def test_append_target_gives_up(ddir: Path) -> None:
    make_file(ddir / "src", 10000)
    with (
        FileChannel.open(ddir / "src") as src,
        FileChannel.open(ddir / "dst", "a") as dst,
        pytest.raises(RouteUnavailable, match="O_APPEND"),
    ):
        src.transfer_to(0, 10000, dst, route="direct")


# ---------------------------------------------------------------- errors after progress


def test_truncation_mid_copy(ddir: Path) -> None:
    size = 2 * direct.CHUNK + MiB
    make_file(ddir / "src", size)

    def shrink(view: memoryview) -> None:
        os.truncate(ddir / "src", direct.CHUNK + 1000)  # after the first buffer was read

    with (
        FileChannel.open(ddir / "src") as src,
        FileChannel.open(ddir / "dst", "w") as dst,
        pytest.raises(TruncatedFileError) as exc,
    ):
        src.transfer_to(0, size, dst, route="direct", on_chunk=shrink)
    assert exc.value.bytes_moved == direct.CHUNK + 1000
    assert exc.value.expected_end == size


def test_file_size_limit_raises_with_bytes_moved(ddir: Path) -> None:
    """RLIMIT_FSIZE (in a child process): EFBIG after the first 5 MiB, raised with bytes_moved, not given up."""
    make_file(ddir / "src", 12 * MiB)
    code = f"""
import errno, os, resource, signal
from zcopy import routes
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (5 << 20, 5 << 20))
s = os.open({str(ddir / "src")!r}, os.O_RDONLY); d = os.open({str(ddir / "dst")!r}, os.O_WRONLY | os.O_CREAT)
try:
    routes.move(s, d, 0, 12 << 20, route="direct", dst_offset=0)
except OSError as e:
    print(errno.errorcode[e.errno], e.bytes_moved)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["EFBIG", str(5 * MiB)]


def test_enospc_raises_with_bytes_moved(ddir: Path) -> None:
    # 16 MiB of file system: the first 8 MiB O_DIRECT write fits, a later one does not.
    with small_ext4(16) as fs:
        make_file(ddir / "src", 24 * MiB)
        with FileChannel.open(ddir / "src") as src, FileChannel.open(fs / "dst", "w") as dst:
            with pytest.raises(OSError) as exc:
                src.transfer_to(0, 24 * MiB, dst, route="direct")
            assert not _flags(dst.fileno()) & os.O_DIRECT  # put back as found, after the error too
        assert exc.value.errno == errno.ENOSPC
        moved = exc.value.bytes_moved  # type: ignore[attr-defined]
        assert direct.CHUNK <= moved < 16 * MiB
        assert (fs / "dst").read_bytes()[:moved] == (ddir / "src").read_bytes()[:moved]


# ---------------------------------------------------------------- the syscalls really made


def test_strace_shows_o_direct_and_no_page_cache_body(ddir: Path) -> None:
    import shutil

    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    size = 3 * direct.CHUNK + 4096 * 3 + 100  # several blocks: the writer's helper thread writes most of them
    make_file(ddir / "src", size)
    code = f"""
from zcopy import FileChannel, read_file
with FileChannel.open({str(ddir / "src")!r}) as s, FileChannel.open({str(ddir / "dst")!r}, "w") as d:
    s.transfer_to(0, {size}, d, route="direct")
with FileChannel.open({str(ddir / "src")!r}, direct=True) as ch:
    pass
"""
    trace = ddir / "trace"
    # One file per thread (-ff: no call split across lines), merged in time order (-ttt): the flag is per open
    # file, set by one thread and used by another.
    subprocess.run(["strace", "-f", "-ff", "-ttt", "-o", str(trace), "-e",
                    "trace=openat,fcntl,preadv2,pwrite64,read,write", sys.executable, "-c", code],
                   check=True, capture_output=True)  # fmt: skip
    files = list(ddir.glob("trace.*"))
    lines = [ln.split(" ", 1)[1] for ln in sorted(
        (ln for f in files for ln in f.read_text().splitlines() if ln[:1].isdigit() and " " in ln),
        key=lambda ln: float(ln.split(" ", 1)[0]))]  # fmt: skip
    assert any("openat(" in ln and "src" in ln and "O_DIRECT" in ln for ln in lines)  # direct=True open flags
    direct_on: dict[str, bool] = {}
    body = tail = 0
    a = dio_offset(ddir / "src")
    for ln in lines:
        if "F_SETFL" in ln:
            fd = ln.split("fcntl(")[1].split(",")[0]
            direct_on[fd] = "O_DIRECT" in ln
        elif "preadv2(" in ln or "pwrite64(" in ln:
            fd = ln.split("(")[1].split(",")[0]
            n = int(ln.rsplit("=", 1)[1])
            if direct_on.get(fd):
                body += n
            else:
                tail += n
    assert len(files) >= 2  # the writes overlapped the reads: a helper thread made some of them
    # The aligned body moved only while O_DIRECT was on; only the partial last block went through the page cache.
    assert body == 2 * (size - size % a)
    assert tail == 2 * (size % a)


# ---------------------------------------------------------------- sparse and growing sources


def _sparse(path: Path) -> bytes:
    """1 MiB of data, a 20 MiB hole, 1 MiB + 5 bytes of data, then a trailing hole up to 30 MiB."""
    a, b = os.urandom(MiB), os.urandom(MiB + 5)
    with open(path, "wb") as f:
        f.write(a)
        f.seek(21 * MiB)
        f.write(b)
        f.truncate(30 * MiB)
    return a + bytes(20 * MiB) + b + bytes(30 * MiB - 22 * MiB - 5)


def test_sparse_source_stays_sparse(ddir: Path) -> None:
    data = _sparse(ddir / "src")
    if os.stat(ddir / "src").st_blocks * 512 >= len(data):
        pytest.skip("this file system stored the holes as data")
    with observe() as obs:
        zcopy.copy(ddir / "src", ddir / "dst", route="direct")
    assert (ddir / "dst").read_bytes() == data
    st = os.stat(ddir / "dst")
    assert st.st_size == len(data) and st.st_blocks * 512 < 4 * MiB  # the holes were skipped, not written
    assert obs.operations[0].syscalls.get("lseek", 0) >= 2  # found by SEEK_DATA/SEEK_HOLE


def test_sparse_source_with_a_hook_or_into_existing_data_is_dense_and_exact(ddir: Path) -> None:
    data = _sparse(ddir / "src")
    seen = bytearray()
    make_file(ddir / "dst", len(data), seed=3)  # existing bytes under the holes must become zeros
    with FileChannel.open(ddir / "src") as src, FileChannel.open(ddir / "dst", "r+") as dst:
        src.position = 12345
        assert src.transfer_to(0, len(data), dst, route="direct", on_chunk=seen.extend) == len(data)
        assert src.position == 12345  # transfer_to never moves the source's position
    assert bytes(seen) == data
    assert (ddir / "dst").read_bytes() == data
    with FileChannel.open(ddir / "src") as src, FileChannel.open(ddir / "dst2", "w") as dst:
        src.position = 777
        assert src.transfer_to(0, len(data), dst, route="direct") == len(data)
        assert src.position == 777  # SEEK_DATA/SEEK_HOLE moved it; the route put it back
    assert (ddir / "dst2").read_bytes() == data


def test_source_appended_to_during_the_copy(ddir: Path) -> None:
    """A file that grows meanwhile: the transfer moves the size it had at the start (Java's transferTo rule)."""
    size = direct.CHUNK + MiB
    data = make_file(ddir / "src", size)

    def grow(view: memoryview) -> None:
        with open(ddir / "src", "ab") as f:
            f.write(b"more" * 1000)

    with FileChannel.open(ddir / "src") as src, FileChannel.open(ddir / "dst", "w") as dst:
        assert src.transfer_to(0, 1 << 40, dst, route="direct", on_chunk=grow) == size
    assert (ddir / "dst").read_bytes() == data


# ---------------------------------------------------------------- waiting, channels, CLI


def test_non_blocking_target_stops_without_losing_bytes(ddir: Path) -> None:
    size = 8 * MiB
    data = make_file(ddir / "src", size)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
    c.setblocking(False)
    try:
        with FileChannel.open(ddir / "src") as src:
            first = src.transfer_to(0, size, c, route="direct")
            assert 0 < first < size  # the socket buffer filled up: a short count, no error, no busy loop
            got = bytearray()
            while len(got) < first:
                got += s.recv(1 << 20)
            c.setblocking(True)
            rest = src.transfer_to(first, size - first, c, route="direct")
            c.shutdown(socket.SHUT_WR)
            while chunk := s.recv(1 << 20):
                got += chunk
    finally:
        c.close()
        s.close()
    assert first + rest == size and bytes(got) == data


def test_socket_timeout_raises_with_bytes_moved(ddir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
    try:
        c.sendall(b"x" * 5000)  # then nothing more, and no EOF
        s.settimeout(0.2)
        with FileChannel.open(ddir / "dst", "w") as dst:
            with pytest.raises(TimeoutError) as exc:
                dst.transfer_from(s, 0, 10000, route="direct")
            assert _flags(dst.fileno()) & os.O_DIRECT == 0
    finally:
        c.close()
        s.close()
    assert exc.value.bytes_moved == 5000  # type: ignore[attr-defined]
    assert (ddir / "dst").read_bytes() == b"x" * 5000


def test_direct_channel_unaligned_io_says_why(ddir: Path) -> None:
    make_file(ddir / "f", 8192)
    with FileChannel.open(ddir / "f", "r+", direct=True) as ch:
        with pytest.raises(OSError, match="needs buffers aligned") as exc:
            ch.readinto(bytearray(100), 1)
        assert exc.value.errno == errno.EINVAL
        buf = zcopy.aligned_buffer(4096)
        buf[:] = b"z" * 4096
        with observe() as obs:
            assert ch.write(buf, position=4096) == 4096
        assert (obs.operations[0].route, obs.operations[0].user_bytes) == ("direct", 0)
    assert (ddir / "f").read_bytes()[4096:] == b"z" * 4096


def test_cli_forced_direct_on_tmpfs_fails_cleanly() -> None:
    with tmpfs_dir() as d:
        make_file(d / "src", 10000)
        exe = os.path.join(os.path.dirname(sys.executable), "zcopy")
        r = subprocess.run([exe, "cp", "--route", "direct", str(d / "src"), str(d / "dst")],
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode != 0 and "tmpfs" in r.stderr and "Traceback" not in r.stderr
        assert not (d / "dst").exists() and not list(d.glob(".dst.*"))  # nothing partial published


@pytest.mark.parametrize("route", ["direct", "readwrite"])
def test_hook_sees_each_byte_once_when_a_nonblocking_socket_takes_part(ddir: Path, route: str) -> None:
    # A file source into a non-blocking socket: a write the socket only partly takes ends the call, and the next
    # call reads the rest again; the hook must not see those bytes twice.
    data = make_file(ddir / "src", 6 * MiB + 5)
    sink = Drain()
    seen = bytearray()
    with FileChannel.open(ddir / "src") as src, sink.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # so that a 1 MiB write is only partly taken
        sock.setblocking(False)
        moved = routes.move(src.fileno(), sock.fileno(), 0, len(data), route=route, wait=True, on_chunk=seen.extend)
        assert moved.nbytes == len(data)
    sink.wait()
    assert bytes(sink.data) == data
    assert len(seen) == len(data) and bytes(seen) == data


@contextlib.contextmanager
def _fed(data: bytes) -> Iterator[socket.socket]:
    """A connected TCP socket whose peer thread sends `data` then FIN; the sender is joined and both ends closed."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
    sender = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
    sender.start()
    try:
        yield s
    finally:
        sender.join()
        c.close()
        s.close()


# ---------------------------------------------------------------- failures in the middle of the overlapped pipeline


def _no_helper_left() -> bool:
    from zcopy.routes.direct_writer import THREAD_NAME

    return not [t for t in threading.enumerate() if t.name == THREAD_NAME]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("side", ["read", "write"])
def test_eio_mid_pipeline_raises_with_bytes_moved(ddir: Path, monkeypatch: pytest.MonkeyPatch, side: str) -> None:
    """EIO injected at the syscall boundary (os.preadv / os.pwrite) on the 3rd O_DIRECT call of one side, while the
    other side runs ahead: raised with bytes_moved = what is on the disk, in order; no thread or fd left."""
    size = 4 * direct.CHUNK + 5
    (ddir / "src").write_bytes(data := os.urandom(size))
    fds = _open_fds()
    with FileChannel.open(ddir / "src") as src, FileChannel.open(ddir / "dst", "w") as dst:
        watched = src.fileno() if side == "read" else dst.fileno()
        real = os.preadv if side == "read" else os.pwrite
        calls = []

        def fake(fd: int, buf: object, pos: int) -> int:
            if fd == watched and _flags(fd) & os.O_DIRECT:
                calls.append(pos)
                if len(calls) == 3:
                    raise OSError(errno.EIO, "injected EIO")
            return real(fd, buf, pos)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "preadv" if side == "read" else "pwrite", fake)
        before = (_flags(src.fileno()), _flags(dst.fileno()))
        with pytest.raises(OSError) as exc:
            src.transfer_to(0, size, dst, route="direct")
        monkeypatch.undo()
        assert (_flags(src.fileno()), _flags(dst.fileno())) == before
    assert exc.value.errno == errno.EIO
    moved = exc.value.bytes_moved  # type: ignore[attr-defined]
    assert moved == 2 * direct.CHUNK  # two blocks landed before the failed call, none after it
    assert (ddir / "dst").read_bytes()[:moved] == data[:moved]
    assert _no_helper_left() and _open_fds() == fds


def test_enospc_mid_pipeline_leaves_nothing_running(ddir: Path) -> None:
    with small_ext4(16) as fs:
        (ddir / "src").write_bytes(data := os.urandom(24 * MiB))
        fds = _open_fds()
        with FileChannel.open(ddir / "src") as src, FileChannel.open(fs / "dst", "w") as dst, \
                pytest.raises(OSError) as exc:  # fmt: skip
            src.transfer_to(0, 24 * MiB, dst, route="direct")
        assert exc.value.errno == errno.ENOSPC
        moved = exc.value.bytes_moved  # type: ignore[attr-defined]
        assert 0 < moved < 16 * MiB and (fs / "dst").read_bytes()[:moved] == data[:moved]
        assert _no_helper_left() and _open_fds() == fds


def test_short_read_mid_pipeline_is_truncation(ddir: Path) -> None:
    size = 4 * direct.CHUNK
    (ddir / "src").write_bytes(data := os.urandom(size))
    shrunk = []

    def shrink(view: memoryview) -> None:
        if not shrunk:  # after the first block was read; the writer has it while the next reads come short
            os.truncate(ddir / "src", 2 * direct.CHUNK + 4096 + 10)
            shrunk.append(1)

    with FileChannel.open(ddir / "src") as src, FileChannel.open(ddir / "dst", "w") as dst, \
            pytest.raises(TruncatedFileError) as exc:  # fmt: skip
        src.transfer_to(0, size, dst, route="direct", on_chunk=shrink)
    assert exc.value.bytes_moved == 2 * direct.CHUNK + 4096 + 10
    assert (ddir / "dst").read_bytes() == data[: 2 * direct.CHUNK + 4096 + 10]
    assert _no_helper_left()


@pytest.mark.parametrize("size", [3 * direct.CHUNK + 7, 5 * direct.STREAM_CHUNK + 4096])
def test_overlap_bytes_identical_random_data(ddir: Path, size: int) -> None:
    """Random bytes (make_file's pattern repeats every 64 KiB and would hide a block written at the wrong place),
    file → file and socket → file, through several buffers."""
    (ddir / "src").write_bytes(data := os.urandom(size))
    with observe() as obs:
        zcopy.copy(ddir / "src", ddir / "dst", route="direct")
    assert (ddir / "dst").read_bytes() == data
    op = obs.operations[0]
    assert op.route == "direct" and op.user_bytes == 2 * (size % dio_offset(ddir / "src"))
    assert op.syscalls["pwrite64"] >= size // direct.CHUNK
    with _fed(data) as s, FileChannel.open(ddir / "rx", "w") as dst:
        assert dst.transfer_from(s, 0, size, route="direct") == size
    assert (ddir / "rx").read_bytes() == data
    assert _no_helper_left()


def test_socket_source_refused_at_the_first_dma_write_is_salvaged(ddir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that takes the flag and refuses the write (EINVAL): the received bytes cannot be read again,
    so they land through the page cache and the next route continues after them; direct is skipped with why."""
    size = 3 * direct.STREAM_CHUNK + 11
    data = os.urandom(size)
    real = os.pwrite

    def refuse(fd: int, buf: memoryview, pos: int) -> int:
        if _flags(fd) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "injected EINVAL")
        return real(fd, buf, pos)

    monkeypatch.setattr(os, "pwrite", refuse)
    with _fed(data) as s, FileChannel.open(ddir / "dst", "w") as dst:
        moved = routes.move(s.fileno(), dst.fileno(), None, size, dst_offset=0, prefer="direct", wait=True)
    assert moved.nbytes == size and moved.route != "direct"
    assert moved.skipped[0][0] == "direct" and "refused an aligned O_DIRECT write" in moved.skipped[0][1]
    assert (ddir / "dst").read_bytes() == data
    assert _no_helper_left()
