"""`zcopy send --exclude`: rsync's rules for simple globs (zcopy.transfer.exclude), unit and end to end."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from zcopy.transfer.exclude import Excluder, Pattern
from zcopy.transfer.sources import collect

from .conftest import ZCOPY, spawn_recv


@pytest.mark.parametrize("pattern,name,is_dir,hit", [
    ("*.tmp", "tree/a.tmp", False, True),
    ("*.tmp", "tree/sub/deep/b.tmp", False, True),
    ("*.tmp", "tree/a.tmpx", False, False),
    (".git", "tree/.git", True, True),
    (".git", "tree/x.git", True, False),
    ("cache/", "tree/cache", True, True),
    ("cache/", "tree/cache", False, False),  # directories only
    ("sub/*.o", "tree/sub/a.o", False, True),
    ("sub/*.o", "tree/sub/x/a.o", False, False),  # * stays in one component
    ("sub/**.o", "tree/sub/x/a.o", False, True),
    ("sub/*.o", "tree/mysub/a.o", False, False),  # a component boundary, not a substring
    ("/tree/top.txt", "tree/top.txt", False, True),
    ("/top.txt", "tree/top.txt", False, False),  # anchored at the top of the transfer
    ("f?.dat", "tree/f1.dat", False, True),
    ("f?.dat", "tree/f10.dat", False, False),
    ("f[0-4].dat", "tree/f3.dat", False, True),
    ("f[!0-4].dat", "tree/f3.dat", False, False),
    ("f[!0-4].dat", "tree/f7.dat", False, True),
    ("tree", "tree", True, True),
])
def test_rsync_rules(pattern: str, name: str, is_dir: bool, hit: bool) -> None:
    assert Pattern(pattern).matches(name, is_dir) is hit


def test_empty_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="empty pattern"):
        Excluder([""])


def test_an_excluded_directory_is_not_walked(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "keep").mkdir(parents=True)
    (tree / "cache" / "deep").mkdir(parents=True)
    (tree / "keep" / "a.txt").write_text("a")
    (tree / "keep" / "b.tmp").write_text("b")
    (tree / "cache" / "deep" / "c.txt").write_text("c")
    (tree / "top.txt").write_text("t")
    sources, _ = collect([tree], exclude=["cache/", "*.tmp", "/tree/top.txt"])
    assert [s.entry.name for s in sources] == [b"tree", b"tree/keep", b"tree/keep/a.txt"]


def test_send_exclude_end_to_end(tmp_path: Path) -> None:
    tree = tmp_path / "src" / "tree"
    (tree / ".git").mkdir(parents=True)
    (tree / ".git" / "HEAD").write_text("ref\n")
    (tree / "a.py").write_text("print(1)\n")
    (tree / "a.pyc").write_bytes(b"\0" * 10)
    dst = tmp_path / "dst"
    dst.mkdir()
    recv, port = spawn_recv(dst, "--once", "--plain")
    r = subprocess.run([*ZCOPY, "send", str(tree), f"127.0.0.1:{port}", "--plain", "--exclude", ".git",
                        "--exclude", "*.pyc"], capture_output=True, text=True, timeout=60)
    recv.communicate(timeout=30)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (dst / "tree").iterdir()) == ["a.py"]
    assert "1 file," in r.stdout
