"""The resolver against real directories and symlinks: nothing outside the root, links inside followed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from zcopy.serve.resolve import Opened, Resolver


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_bytes(b"inside")
    (tmp_path / "outside.txt").write_bytes(b"SECRET")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "g.txt").write_bytes(b"SECRET")
    os.symlink("sub/f.txt", root / "rel_in")
    os.symlink(str(root / "sub" / "f.txt"), root / "abs_in")
    os.symlink("../outside.txt", root / "rel_out")
    os.symlink(str(tmp_path / "outside.txt"), root / "abs_out")
    os.symlink("../outdir", root / "dir_out")
    os.symlink("sub", root / "dir_in")
    os.symlink("sub/../../outside.txt", root / "sneaky")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("/", root / "slash")
    os.mkfifo(root / "fifo")
    return root


def read(r: Resolver, *segs: bytes) -> bytes | None:
    got = r.open(segs)
    if got is None:
        return None
    try:
        return b"<dir>" if got.is_dir else os.pread(got.fd, 100, 0)
    finally:
        os.close(got.fd)


def test_regular_and_directory(tree: Path) -> None:
    r = Resolver(tree)
    assert read(r, b"sub", b"f.txt") == b"inside"
    assert read(r, b"sub") == b"<dir>"
    assert read(r) == b"<dir>"
    assert read(r, b"missing") is None
    assert read(r, b"sub", b"f.txt", b"x") is None  # a file in the middle of a path


def test_symlinks_inside_followed(tree: Path) -> None:
    r = Resolver(tree)
    assert read(r, b"rel_in") == b"inside"
    assert read(r, b"abs_in") == b"inside"
    assert read(r, b"dir_in", b"f.txt") == b"inside"


@pytest.mark.parametrize("name", [b"rel_out", b"abs_out", b"sneaky", b"loop1", b"slash", b"fifo"])
def test_escaping_looping_or_special_refused(tree: Path, name: bytes) -> None:
    assert read(Resolver(tree), name) is None


def test_directory_link_out_refused(tree: Path) -> None:
    assert read(Resolver(tree), b"dir_out", b"g.txt") is None


def test_no_follow_policy(tree: Path) -> None:
    r = Resolver(tree, follow_symlinks=False)
    assert read(r, b"rel_in") is None
    assert read(r, b"sub", b"f.txt") == b"inside"


def test_dotfiles_in_link_targets_refused(tree: Path) -> None:
    (tree / ".hidden").write_bytes(b"h")
    os.symlink(".hidden", tree / "to_hidden")
    assert read(Resolver(tree), b"to_hidden") is None
    assert read(Resolver(tree, dotfiles=True), b"to_hidden") == b"h"


def test_root_itself_may_be_a_symlink(tree: Path, tmp_path: Path) -> None:
    os.symlink(tree, tmp_path / "rootlink")
    assert read(Resolver(tmp_path / "rootlink"), b"abs_in") == b"inside"


def test_symlink_swapped_in_during_resolution_never_escapes(tree: Path) -> None:
    """A racer flips sub/ between a real directory and a link to outside; every answer is inside or None."""
    outdir = tree.parent / "outdir"
    (outdir / "f.txt").write_bytes(b"SECRET")
    r = Resolver(tree)
    stop = threading.Event()

    def racer() -> None:
        real, link, tmp = tree / "sub", tree / "sub_link", tree / "sub_tmp"
        os.symlink(str(outdir), link)
        while not stop.is_set():
            os.rename(real, tmp)
            os.rename(link, real)  # now sub → outside
            os.rename(real, link)
            os.rename(tmp, real)  # back to the real directory

    t = threading.Thread(target=racer)
    t.start()
    seen: dict[bytes | None, int] = {}
    end = time.monotonic() + 60  # a hang detector only: both outcomes come within milliseconds
    try:
        # Until the race has visibly fired: some reads found the real directory, some the swapped-in link
        # (refused → None). A run where it never fired would prove nothing.
        while seen.get(b"inside", 0) < 100 or seen.get(None, 0) < 100:
            got = read(r, b"sub", b"f.txt")
            seen[got] = seen.get(got, 0) + 1
            assert time.monotonic() < end, f"the race did not fire: {seen}"
    finally:
        stop.set()
        t.join()
    assert b"SECRET" not in seen
    assert set(seen) <= {b"inside", None}


def test_without_proc_the_fallback_open_checks_the_inode(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_proc(path: object, flags: int, *args: object, **kw: object) -> int:
        if isinstance(path, str) and path.startswith("/proc/self/fd/"):
            raise FileNotFoundError(2, "no /proc", path)
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_proc)
    r = Resolver(tree)
    assert read(r, b"sub", b"f.txt") == b"inside"
    assert read(r, b"rel_in") == b"inside"
    assert read(r, b"rel_out") is None


def test_directory_moved_out_of_the_root_mid_walk_is_refused(tree: Path) -> None:
    """The rename race: `sub/` leaves the root after we opened it but before we open `f.txt` in it."""
    away = tree.parent / "away"

    class Racy(Resolver):
        def _finish(self, fd: int, st: os.stat_result, name: bytes, dir_fd: int) -> Opened | None:
            if not away.exists():
                os.rename(tree / "sub", away)  # now outside the root, and we hold its fd
            return super()._finish(fd, st, name, dir_fd)

    assert read(Racy(tree), b"sub", b"f.txt") is None
    os.rename(away, tree / "sub")
    assert read(Resolver(tree), b"sub", b"f.txt") == b"inside"
