"""zcopy.copy into every kind of existing destination, side by side with GNU cp (zcopy.dest).

Devices are made by the test (mknod in its temp dir); the machine's own /dev nodes are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import make_file

from zcopy import copy, dest
from zcopy.dest import DestinationRefused
from zcopy.fastcopy import copy_result

GNU_CP = shutil.which("cp")


def gnu_cp(src: Path, dst: Path, *flags: str) -> None:
    assert GNU_CP is not None
    subprocess.run([GNU_CP, *flags, str(src), str(dst)], check=True, capture_output=True, timeout=60)


def zcopy_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zcopy", *args], capture_output=True, text=True, timeout=60)


def null_device(path: Path) -> Path:
    """A character device node 1,3 (the null driver) made in the test's own directory."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod is not permitted here")
    return path


class FifoReader:
    """A thread that opens a FIFO for reading and keeps all it reads until the writer closes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                self.data += chunk

    def join(self) -> bytes:
        self.thread.join(30)
        assert not self.thread.is_alive()
        return bytes(self.data)

    def release(self) -> None:
        """Unblock the reader's open() if no writer ever came (a failed test must not hang)."""
        if self.thread.is_alive():
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            self.thread.join(5)


@pytest.fixture
def fifo_reader() -> Iterator[Callable[[Path], FifoReader]]:
    made: list[FifoReader] = []

    def start(path: Path) -> FifoReader:
        made.append(FifoReader(path))
        return made[-1]

    yield start
    for r in made:
        r.release()


def snapshot(p: Path) -> tuple[str, int, int, int, bytes | None]:
    """What a copy may change about a destination: kind, mode, nlink, rdev, content of a regular file."""
    st = os.lstat(p)
    kind = stat.filemode(st.st_mode)[0]
    return kind, stat.S_IMODE(st.st_mode), st.st_nlink, st.st_rdev, p.read_bytes() if kind == "-" else None


def copies_in_both(tmp_path: Path, setup: Callable[[Path], Path], *flags: str) -> tuple[Path, Path]:
    """The same destination made twice, one written by GNU cp, one by zcopy.copy (metadata=True for -p)."""
    src = tmp_path / "src"
    make_file(src, 200_000)
    os.chmod(src, 0o751)
    a, b = tmp_path / "gnu", tmp_path / "zc"
    a.mkdir()
    b.mkdir()
    gnu_cp(src, setup(a), *flags)
    copy(src, setup(b), metadata="-p" in flags)
    return a, b


def test_existing_regular_file_keeps_inode_mode_owner_and_hard_links(tmp_path: Path) -> None:
    def setup(d: Path) -> Path:
        f = d / "f"
        f.write_bytes(b"old content, longer than nothing " * 20_000)  # longer than src: must be truncated
        os.chmod(f, 0o600)
        os.chown(f, 12345, 54321)
        os.link(f, d / "hard")
        return f

    a, b = copies_in_both(tmp_path, setup)
    src = (tmp_path / "src").read_bytes()
    for d in (a, b):
        st, hard = os.stat(d / "f"), os.stat(d / "hard")
        assert st.st_ino == hard.st_ino and st.st_nlink == 2
        assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (12345, 54321)
        assert (d / "hard").read_bytes() == src
    assert snapshot(a / "f") == snapshot(b / "f")


def test_symlink_is_written_through_to_its_target(tmp_path: Path) -> None:
    def setup(d: Path) -> Path:
        (d / "target").write_bytes(b"old")
        os.chmod(d / "target", 0o640)
        (d / "link").symlink_to("target")
        return d / "link"

    a, b = copies_in_both(tmp_path, setup)
    for d in (a, b):
        assert (d / "link").is_symlink() and os.readlink(d / "link") == "target"
        assert (d / "target").read_bytes() == (tmp_path / "src").read_bytes()
    assert snapshot(a / "target") == snapshot(b / "target")


def test_char_device_is_written_into_not_replaced(tmp_path: Path) -> None:
    a, b = copies_in_both(tmp_path, lambda d: null_device(d / "nul"))
    assert snapshot(a / "nul") == snapshot(b / "nul")
    st = os.lstat(b / "nul")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    m = copy_result(tmp_path / "src", b / "nul")
    assert m.nbytes == 200_000 and m.dst_kind == "other" and m.route in ("sendfile", "readwrite")


def test_char_device_with_metadata_like_cp_p(tmp_path: Path) -> None:
    # cp -p into a device sets the device node's mode and times, as it does for a file; zcopy does the same.
    a, b = copies_in_both(tmp_path, lambda d: null_device(d / "nul"), "-p")
    assert snapshot(a / "nul") == snapshot(b / "nul") and stat.S_IMODE(os.lstat(b / "nul").st_mode) == 0o751


def test_fifo_is_streamed_into(tmp_path: Path, fifo_reader: Callable[[Path], FifoReader]) -> None:
    data = make_file(tmp_path / "src", 3_000_000)
    for name, run in (("gnu", lambda f: gnu_cp(tmp_path / "src", f)), ("zc", lambda f: copy(tmp_path / "src", f))):
        fifo = tmp_path / f"fifo-{name}"
        os.mkfifo(fifo)
        reader = fifo_reader(fifo)
        run(fifo)
        assert reader.join() == data, name
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode), name
    fifo = tmp_path / "fifo-zc"
    reader = fifo_reader(fifo)
    m = copy_result(tmp_path / "src", fifo)
    assert reader.join() == data and m.route == "splice" and m.dst_kind == "pipe"


def test_fifo_by_the_cli_names_its_route(tmp_path: Path, fifo_reader: Callable[[Path], FifoReader]) -> None:
    data = make_file(tmp_path / "src", 100_000)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = fifo_reader(fifo)
    r = zcopy_cli("cp", str(tmp_path / "src"), str(fifo), "--json")
    assert r.returncode == 0, r.stderr
    assert reader.join() == data
    out = json.loads(r.stdout)
    assert out["route"] == "splice" and out["dst_kind"] == "pipe" and out["bytes"] == len(data)


def test_dangling_symlink_is_refused_like_cp(tmp_path: Path) -> None:
    make_file(tmp_path / "src", 10)
    (tmp_path / "link").symlink_to("nowhere")
    assert GNU_CP is not None
    r = subprocess.run([GNU_CP, str(tmp_path / "src"), str(tmp_path / "link")], capture_output=True, timeout=60)
    assert r.returncode != 0 and b"dangling" in r.stderr
    with pytest.raises(DestinationRefused, match="dangling symlink"):
        copy(tmp_path / "src", tmp_path / "link")
    assert not (tmp_path / "nowhere").exists() and (tmp_path / "link").is_symlink()


def test_directory_in_the_way_is_refused(tmp_path: Path) -> None:
    make_file(tmp_path / "src", 10)
    (tmp_path / "d" / "src").mkdir(parents=True)
    with pytest.raises(DestinationRefused, match="directory"):
        copy(tmp_path / "src", tmp_path / "d")
    assert (tmp_path / "d" / "src").is_dir()


def test_new_file_takes_source_mode_minus_umask_like_cp(tmp_path: Path) -> None:
    def setup(d: Path) -> Path:
        return d / "new"

    old = os.umask(0o027)
    try:
        a, b = copies_in_both(tmp_path, setup)
    finally:
        os.umask(old)
    assert snapshot(a / "new") == snapshot(b / "new")
    assert stat.S_IMODE(os.stat(b / "new").st_mode) == 0o751 & ~0o027


def _enospc(*a: object, **k: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_copy_to_a_new_name_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_file(tmp_path / "a", 3_000_000)
    monkeypatch.setattr(os, "copy_file_range", _enospc)
    with pytest.raises(OSError) as ei:
        copy(tmp_path / "a", tmp_path / "b")
    assert ei.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_atomic_replaces_a_regular_file_by_rename(tmp_path: Path) -> None:
    data = make_file(tmp_path / "src", 50_000)
    f = tmp_path / "f"
    f.write_bytes(b"old")
    os.chmod(f, 0o600)
    os.chown(f, 12345, 54321)
    os.link(f, tmp_path / "hard")
    ino = os.stat(f).st_ino
    (tmp_path / "link").symlink_to("f")
    copy(tmp_path / "src", tmp_path / "link", atomic=True)
    st = os.stat(f)
    assert f.read_bytes() == data and st.st_ino != ino and st.st_nlink == 1
    assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (12345, 54321)
    assert (tmp_path / "hard").read_bytes() == b"old"  # the other name keeps the old inode
    assert (tmp_path / "link").is_symlink()  # the link's target was replaced, not the link
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".zcopy-tmp")]


def test_atomic_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_file(tmp_path / "a", 3_000_000)
    (tmp_path / "b").write_bytes(b"precious")
    monkeypatch.setattr(os, "copy_file_range", _enospc)
    with pytest.raises(OSError):
        copy(tmp_path / "a", tmp_path / "b", atomic=True)
    assert (tmp_path / "b").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_atomic_refuses_device_and_fifo_before_a_byte(tmp_path: Path) -> None:
    make_file(tmp_path / "src", 1000)
    nul = null_device(tmp_path / "nul")
    os.mkfifo(tmp_path / "fifo")
    for target, word in ((nul, "device"), (tmp_path / "fifo", "FIFO")):
        before = snapshot(target)
        with pytest.raises(DestinationRefused, match=f"is a {word}: --atomic"):
            copy(tmp_path / "src", target, atomic=True)
        assert snapshot(target) == before
    r = zcopy_cli("cp", "--atomic", str(tmp_path / "src"), str(nul))
    assert r.returncode == 2 and "is a device" in r.stderr and "Traceback" not in r.stderr
    assert stat.S_ISCHR(os.lstat(nul).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "nul", "src"]


def test_kind_of_mode() -> None:
    assert dest.kind_of_mode(stat.S_IFREG | 0o644) == dest.FILE
    assert dest.kind_of_mode(stat.S_IFCHR) == dest.DEVICE and dest.kind_of_mode(stat.S_IFBLK) == dest.DEVICE
    assert dest.kind_of_mode(stat.S_IFIFO) == dest.FIFO
    for mode in (stat.S_IFDIR, stat.S_IFSOCK):
        with pytest.raises(ValueError):
            dest.kind_of_mode(mode)


def test_cli_refuses_a_socket_destination(tmp_path: Path) -> None:
    import socket

    make_file(tmp_path / "src", 100)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        r = zcopy_cli("cp", str(tmp_path / "src"), str(tmp_path / "sock"))
    finally:
        sock.close()
    assert r.returncode == 2 and "is a socket" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("existing", [True, False])
def test_cli_failure_says_what_it_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], existing: bool
) -> None:
    from zcopy.cli import main

    make_file(tmp_path / "src", 3_000_000)
    if existing:
        (tmp_path / "dst").write_bytes(b"old")
    monkeypatch.setattr(os, "copy_file_range", _enospc)
    assert main(["cp", str(tmp_path / "src"), str(tmp_path / "dst")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert ("partly written" in err) is existing and ("nothing was written" in err) is not existing
    assert (tmp_path / "dst").exists() is existing
