"""zcopy.copytree and `zcopy cp -r/-a`: a tree with every kind of entry, compared with GNU cp's copy of it."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_file
from direct_fs import _mounted, write_uncached

import zcopy
import zcopy.tree
from zcopy import observe
from zcopy.routes import direct
from zcopy.tree import BATCH, LARGE, CopyTreeError, Stopped, batches, copytree

BAD = os.fsdecode(b"caf\xe9-\xff")  # a name that is not UTF-8


# Runs `zcopy` as another user: the interpreter starts as root (its files may be root's only), imports what the
# command needs, then drops to the user before touching the tree.
AS_USER = """
import os, sys
import argparse, gettext, locale, json
import zcopy.cli.cp, zcopy.cli.cptree, zcopy.cli.progress, zcopy.tree, zcopy.dest, zcopy.fastcopy, zcopy.jsonout
from zcopy.cli import main
user = int(sys.argv[1])
os.setgroups([])
os.setgid(user)
os.setuid(user)
sys.exit(main(sys.argv[2:]))
"""


def zcopy_cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[bytes]:
    cmd = ["-m", "zcopy"] if user is None else ["-c", AS_USER, str(user)]
    return subprocess.run([sys.executable, *cmd, *args], capture_output=True, timeout=120)


def zcopy_cli_in_process(argv: list[str]) -> int:
    from zcopy.cli import main

    return main(argv)


def every_kind(root: Path, outside: Path) -> Path:
    """A source tree with an entry of every kind (returns its root, made at root/"src")."""
    src = root / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty" / "nested-empty").mkdir(parents=True)
    for size in (0, 1, 4095, 4096, 4097, 65536 + 3, LARGE + 1):
        make_file(src / f"size-{size}", size, seed=size)
    make_file(src / "sub" / "deeper" / "leaf", 10_000, seed=7)
    with open(src / "sparse", "wb") as f:  # 4 MiB with 2 small data islands
        f.seek(1 << 20)
        f.write(b"island one")
        f.seek(3 << 20)
        f.write(b"island two")
        f.truncate(4 << 20)
    (src / "sub" / "rel-link").symlink_to("deeper/leaf")
    (src / "abs-out").symlink_to(outside)
    (src / "dangling").symlink_to("no-such-target")
    (src / "dirlink").symlink_to("sub")
    os.link(src / "size-4096", src / "hard-same-dir")
    os.link(src / "size-4096", src / "sub" / "hard-other-dir")
    os.mkfifo(src / "fifo")
    make_file(src / BAD, 500, seed=3)
    (src / f"dir-{BAD}").mkdir()
    make_file(src / f"dir-{BAD}" / "inside", 600, seed=4)
    os.chmod(src / "size-1", 0o4750)
    os.chmod(src / "size-0", 0o600)
    os.chown(src / "size-4095", 12345, 54321)
    os.lchown(src / "sub" / "rel-link", 23456, 65432)
    os.setxattr(src / "size-4097", "user.zcopy", b"an attribute")
    os.setxattr(src / "sub", "user.zcopy-dir", b"a directory's attribute")
    os.utime(src / "size-4096", ns=(1_000_000_000, 1_500_000_123))
    os.utime(src / "sub" / "rel-link", ns=(2_000_000_000, 2_500_000_000), follow_symlinks=False)
    os.chmod(src / "sub" / "deeper", 0o555)
    os.utime(src / "sub", ns=(3_000_000_000, 3_500_000_000))
    os.utime(src / "empty" / "nested-empty", ns=(4_000_000_000, 4_500_000_000))
    return src


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside-file"
    outside.write_bytes(b"outside")
    return every_kind(tmp_path, outside)


def snapshot(root: Path, times: bool) -> dict[str, tuple[object, ...]]:
    """Everything a copy should reproduce, per relative path; hard links as the group of names of one inode."""
    out: dict[str, tuple[object, ...]] = {}
    groups: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            body: object = None
            if stat.S_ISREG(st.st_mode):
                body = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                groups.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {n: os.getxattr(p, n) for n in os.listxattr(p)}
            mtime = st.st_mtime_ns if times else None
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, body, xattrs, mtime)
    for names in groups.values():
        for n in names:
            out[n] = (*out[n], tuple(sorted(names)))
    return out


def test_archive_matches_gnu_cp_a(tree: Path, tmp_path: Path) -> None:
    subprocess.run(["cp", "-a", str(tree), str(tmp_path / "gnu")], check=True)
    result = copytree(tree, tmp_path / "zc")
    gnu, zc = snapshot(tmp_path / "gnu", times=True), snapshot(tmp_path / "zc", times=True)
    assert zc == gnu
    assert zc[BAD][0] == stat.S_IFREG and zc["fifo"][0] == stat.S_IFIFO and zc["abs-out"][5] == str(
        tmp_path / "outside-file"
    )
    assert zc["size-4096"][-1] == ("hard-same-dir", "size-4096", "sub/hard-other-dir")
    assert (zc["size-1"][1], zc["size-4095"][2:4]) == (0o4750, (12345, 54321))
    assert zc["size-4097"][6] == {"user.zcopy": b"an attribute"}
    assert zc["sub"][6] == {"user.zcopy-dir": b"a directory's attribute"}
    assert os.lstat(tmp_path / "zc" / "sparse").st_blocks * 512 < 1 << 20  # holes stayed holes
    assert (tmp_path / "zc" / "sparse").read_bytes() == (tree / "sparse").read_bytes()
    # The totals: every regular file but the two extra names of the hard-linked one is copied once.
    assert result.files == 11 and result.hardlinks == 2 and result.symlinks == 4 and result.specials == 1
    assert result.dirs == 6 and int(result) == sum(os.lstat(p).st_size for p in _copied_files(tree))
    # Every byte by copy_file_range (the empty file's route is the single-file rule's, whatever moved its 0 bytes).
    assert result.routes["copy_file_range"][1] == int(result) and result.errors == []
    assert sum(f for f, _ in result.routes.values()) == 11


def _copied_files(root: Path) -> Iterator[Path]:
    seen = set()
    for dirpath, _, names in os.walk(root):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if stat.S_ISREG(st.st_mode) and st.st_ino not in seen:
                seen.add(st.st_ino)
                yield Path(dirpath, n)


def test_recursive_without_metadata_matches_gnu_cp_r(tree: Path, tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        subprocess.run(["cp", "-r", str(tree), str(tmp_path / "gnu")], check=True)
        r = zcopy_cli("cp", "-r", str(tree), str(tmp_path / "zc"))
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    gnu, zc = snapshot(tmp_path / "gnu", times=False), snapshot(tmp_path / "zc", times=False)
    assert zc == gnu
    assert zc["size-4096"][-1] == ("size-4096",)  # cp -r does not keep hard links
    assert zc["size-1"][1] == 0o750 & ~0o027


def test_cli_json_is_valid_utf8_with_odd_names(tree: Path, tmp_path: Path) -> None:
    r = zcopy_cli("cp", "-a", "--json", str(tree), str(tmp_path / BAD))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.decode("utf-8"))  # strict: raises on anything that is not UTF-8
    assert doc["files"] == 11 and doc["hardlinks"] == 2 and doc["symlinks"] == 4 and doc["errors"] == []
    assert doc["routes"]["copy_file_range"]["bytes"] == doc["bytes"] and doc["stopped"] is None
    assert os.fsdecode(bytes.fromhex(doc["dst_bytes"])) == str(tmp_path / BAD)
    assert (tmp_path / BAD / f"dir-{BAD}" / "inside").read_bytes() == (tree / f"dir-{BAD}" / "inside").read_bytes()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temp dir another user can enter (tmp_path's parents are root-only), for tests that drop privileges."""
    d = Path(tempfile.mkdtemp(prefix="zcopy-tree-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


NOBODY = 65534


def test_unreadable_files_are_reported_and_the_rest_copied(shared_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the copy as another user")
    src = shared_dir / "src"
    (src / "a").mkdir(parents=True)
    make_file(src / "a" / "ok", 1000)
    make_file(src / "a" / "secret", 1000)
    make_file(src / BAD, 10)
    os.chmod(src / "a" / "secret", 0o000)
    os.chmod(src / BAD, 0o000)
    (src / "closed").mkdir()
    make_file(src / "closed" / "hidden", 10)
    os.chmod(src / "closed", 0o000)
    for p in (src, src / "a", src / "a" / "ok"):
        os.chown(p, NOBODY, NOBODY)
    os.chown(shared_dir, NOBODY, NOBODY)
    r = zcopy_cli("cp", "-r", "--json", str(src), str(shared_dir / "dst"), user=NOBODY)
    assert r.returncode == 1, r.stderr
    err = r.stderr.decode("utf-8", "replace")
    assert "secret: cannot open for reading: Permission denied" in err and "Traceback" not in err
    assert "closed: cannot read directory: Permission denied" in err
    doc = json.loads(r.stdout.decode("utf-8"))
    failed = {os.path.basename(os.fsdecode(bytes.fromhex(e["src_bytes"])) if "src_bytes" in e else e["src"])
              for e in doc["errors"]}  # fmt: skip
    assert failed == {"secret", BAD, "closed"}
    assert (shared_dir / "dst" / "a" / "ok").read_bytes() == (src / "a" / "ok").read_bytes()
    assert not (shared_dir / "dst" / "a" / "secret").exists()  # nothing half-made for a file that failed


def test_into_itself_is_refused(tree: Path) -> None:
    for dst in (tree, tree / "sub", tree / "sub" / "deeper" / "new"):
        r = zcopy_cli("cp", "-r", str(tree), str(dst))
        assert r.returncode == 1 and b"into itself" in r.stderr, (dst, r.stderr)
        with pytest.raises(ValueError, match="into itself"):
            copytree(tree, dst, dirs_exist_ok=True)
    assert not (tree / "src").exists() and not (tree / "sub" / "src").exists()


def test_existing_destination_as_cp_does(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    assert zcopy_cli("cp", "-a", str(tree), str(dst)).returncode == 0  # new: dst is the copy
    assert (dst / "sub" / "deeper" / "leaf").exists()
    assert zcopy_cli("cp", "-a", str(tree), str(dst)).returncode == 0  # exists: the copy goes inside
    assert (dst / "src" / "sub" / "deeper" / "leaf").exists()
    # Into an existing tree again: files are written into (same inode, through symlinks), as GNU cp writes them.
    gnu = tmp_path / "gnu"
    subprocess.run(["cp", "-a", str(dst), str(gnu)], check=True)
    for d in (dst, gnu):
        inner = d / "src"
        (inner / "size-4097").write_bytes(b"stale")
        (inner / "sub" / "deeper").chmod(0o755)
        (inner / "sub" / "deeper" / "leaf").unlink()
        (inner / "sub" / "deeper" / "leaf").symlink_to("../../../elsewhere")
        (d / "elsewhere").write_bytes(b"old")
    ino = os.stat(dst / "src" / "size-4097").st_ino
    subprocess.run(["cp", "-a", str(tree), str(gnu)], check=True)
    r = zcopy_cli("cp", "-a", str(tree), str(dst))
    assert r.returncode == 0, r.stderr
    assert os.stat(dst / "src" / "size-4097").st_ino == ino
    leaf = (tree / "sub" / "deeper" / "leaf").read_bytes()
    assert (dst / "elsewhere").read_bytes() == (gnu / "elsewhere").read_bytes() == leaf
    # Times too, but not those of the two links the test made (written through, they keep their own).
    ours, theirs = snapshot(dst / "src", times=True), snapshot(gnu / "src", times=True)
    for snap in (ours, theirs):
        snap["sub/deeper/leaf"] = snap["sub/deeper/leaf"][:-1]
    assert ours == theirs


def test_several_sources_and_their_errors(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "into").mkdir()
    (tmp_path / "f").write_bytes(b"file")
    r = zcopy_cli("cp", "-r", str(tree), str(tmp_path / "f"), str(tmp_path / "missing"), str(tmp_path / "into"))
    assert r.returncode == 1 and b"missing: no such file or directory" in r.stderr
    assert (tmp_path / "into" / "f").read_bytes() == b"file" and (tmp_path / "into" / "src" / "sub").is_dir()
    r = zcopy_cli("cp", str(tree), str(tmp_path / "f"), str(tmp_path / "into"))  # no -r: the directory is omitted
    assert r.returncode == 1 and b"-r not specified" in r.stderr
    r = zcopy_cli("cp", "-r", str(tree), str(tmp_path / "f"), str(tmp_path / "f"))
    assert r.returncode == 2 and b"is not a directory" in r.stderr
    r = zcopy_cli("cp", "-r", "--atomic", str(tree), str(tmp_path / "x"))
    assert r.returncode == 2 and b"--atomic" in r.stderr


def test_a_conflict_is_collected_and_the_rest_copied(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "sub").write_bytes(b"a file where the source has a directory")
    with pytest.raises(CopyTreeError) as ei:
        copytree(tree, dst, dirs_exist_ok=True)
    errors = ei.value.args[0]
    assert [(os.path.basename(s), why) for s, _, why in errors] == [
        ("sub", "cannot overwrite a non-directory with a directory")
    ]
    assert ei.value.result.files == 10 and (dst / "size-4097").exists()
    with pytest.raises(FileExistsError):
        copytree(tree, dst)


def test_enospc_stops_the_copy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in range(4):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(40):
            make_file(src / f"d{d}" / f"f{i}", 64 << 10, seed=i)  # 10 MiB in all
    with _mounted("tmpfs", "size=1m") as mnt:
        with pytest.raises(Stopped) as ei:
            copytree(src, mnt / "dst", threads=1)
        assert ei.value.errno == errno.ENOSPC and str(mnt / "dst") in (ei.value.filename or "")
        copied = ei.value.result.files
        assert 0 < copied < 160
        shutil.rmtree(mnt / "dst")
        r = zcopy_cli("cp", "-a", "--json", str(src), str(mnt / "dst"))
        assert r.returncode == 1 and b"stopped" in r.stderr and b"No space left on device" in r.stderr
        doc = json.loads(r.stdout)
        assert doc["stopped"]["error"] == "No space left on device" and doc["files"] < 160


def test_sync_is_one_syncfs(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zcopy.transfer import durable

    calls: list[int] = []
    fsyncs: list[int] = []
    real = durable.syncfs
    monkeypatch.setattr(durable, "syncfs", lambda fd: (calls.append(fd), real(fd))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd))
    kicked: list[int] = []
    real_kick = zcopy.tree.start_writeback
    monkeypatch.setattr(zcopy.tree, "start_writeback", lambda fd: (kicked.append(fd), real_kick(fd))[1])
    copytree(tree, tmp_path / "dst", sync=True)
    assert len(calls) == 1 and fsyncs == []
    assert len(kicked) == 2  # the files of LARGE bytes or more (one sparse): writeback started once each was copied
    copytree(tree, tmp_path / "dst2")
    assert len(calls) == 1 and len(kicked) == 2  # without sync, neither
    r = zcopy_cli_in_process(["cp", "--sync", "--json", str(tree / "size-1"), str(tree / "size-0"), str(tmp_path)])
    assert r == 0 and len(calls) == 2  # files only, no directory made: their file system is synced all the same


def test_progress_and_observe_see_every_file(tree: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int, int, int]] = []
    with observe() as obs:
        result = copytree(tree, tmp_path / "dst", on_progress=lambda *a: seen.append(a), threads=3)
    assert seen[-1] == (11, 11, int(result), int(result))
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)
    copies = [op for op in obs.operations if op.op == "copy"]
    # Every byte but the sparse file's holes (4 MiB less its data blocks) went by copy_file_range.
    by_cfr = sum(op.nbytes for op in copies if op.route == "copy_file_range")
    assert len(copies) >= 11 and int(result) - (4 << 20) < by_cfr < int(result)


def test_large_cold_file_goes_direct(ddir: Path) -> None:
    (ddir / "src").mkdir()
    data = write_uncached(ddir / "src" / "cold", direct.THRESHOLD)
    make_file(ddir / "src" / "small", 100)
    result = zcopy.copytree(ddir / "src", ddir / "dst")
    assert result.routes["direct"] == [1, len(data)] and result.routes["copy_file_range"] == [1, 100]
    assert (ddir / "dst" / "cold").read_bytes() == data


def test_batches_put_large_files_first_and_spread_directories() -> None:
    def f(d: str, n: int, size: int) -> tuple[str, str, os.stat_result]:
        return (f"s/{d}/{n}", f"t/{d}/{n}", os.stat_result((0o100644, 0, 0, 1, 0, 0, size, 0, 0, 0)))

    files = [f("a", i, 10) for i in range(BATCH + 1)] + [f("b", 0, LARGE)] + [f("c", i, 10) for i in range(3)]
    out = batches(files)
    assert out[0] == [f("b", 0, LARGE)]
    assert [os.path.dirname(b[0][1]) for b in out[1:]] == ["t/a", "t/c", "t/a"]
    assert sorted(x for b in out for x in b) == sorted(files)


def test_copytree_refuses_a_file_source_and_makes_missing_parents(tree: Path, tmp_path: Path) -> None:
    make_file(tmp_path / "f", 10)
    with pytest.raises(NotADirectoryError):
        copytree(tmp_path / "f", tmp_path / "g")
    assert copytree(tree, tmp_path / "new" / "parents" / "dst").files == 11


def test_progress_on_a_terminal_counts_files_and_bytes(tree: Path, tmp_path: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "zcopy", "cp", "-a", str(tree), str(tmp_path / "dst")],
                           stdout=subprocess.PIPE, stderr=follower, timeout=120)  # fmt: skip
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert r.returncode == 0
    assert b"cp 11/11 files" in shown and b"100.0%" in shown
    assert b"11 files, 6 directories" in r.stdout


def test_a_file_that_vanishes_is_reported_with_its_path(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a").mkdir(parents=True)
    for i in range(BATCH + 8):
        make_file(src / "a" / f"f{i:03d}", 100, seed=i)
    gone: list[Path] = []

    def vanish(*_: int) -> None:  # after the first batch: delete a source file not copied yet
        if not gone:
            gone.append(next(p for p in sorted((src / "a").iterdir()) if not (dst / "a" / p.name).exists()))
            gone[0].unlink()

    with pytest.raises(CopyTreeError) as ei:
        copytree(src, dst, on_progress=vanish, threads=1)
    assert ei.value.args[0] == [
        (str(gone[0]), str(dst / "a" / gone[0].name), "cannot open for reading: No such file or directory")
    ]
    assert ei.value.result.files == BATCH + 7 and not (dst / "a" / gone[0].name).exists()


def test_symlinks_given_as_sources_like_cp(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "file").write_bytes(b"content")
    (tmp_path / "ldir").symlink_to("real")
    (tmp_path / "lfile").symlink_to("file")
    for flag, name in (("-r", "r"), ("-a", "a"), (None, "plain")):
        for d in ("gnu", "zc"):
            (tmp_path / f"{d}-{name}").mkdir()
        args = [str(tmp_path / "lfile"), str(tmp_path / "ldir" if flag else tmp_path / "file")]
        subprocess.run(["cp", *([flag] if flag else []), *args, str(tmp_path / f"gnu-{name}")], check=True)
        r = zcopy_cli("cp", *([flag] if flag else []), *args, str(tmp_path / f"zc-{name}"))
        assert r.returncode == 0, r.stderr
        assert snapshot(tmp_path / f"zc-{name}", times=False) == snapshot(tmp_path / f"gnu-{name}", times=False)
    assert (tmp_path / "zc-r" / "ldir").is_symlink() and not (tmp_path / "zc-plain" / "lfile").is_symlink()


def test_ctrl_c_stops_the_pool_even_with_a_worker_blocked(tmp_path: Path) -> None:
    import signal
    import time

    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "many").mkdir(parents=True)
    for i in range(BATCH + 8):  # two work items, so the pool runs
        make_file(src / "many" / f"f{i:03d}", 100, seed=i)
    make_file(src / "blocked", 100)
    (dst / "src").mkdir(parents=True)
    os.mkfifo(dst / "src" / "blocked")  # written into as cp would: its open waits for a reader that never comes
    p = subprocess.Popen([sys.executable, "-m", "zcopy", "cp", "-r", str(src), str(dst)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((dst / "src" / "many").glob("f*"))) < BATCH + 8:
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130 and b"interrupted" in err and b"Traceback" not in err
