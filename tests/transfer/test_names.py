"""Path-safety policy: what a manifest name may look like."""

from __future__ import annotations

import re

import pytest

from zcopy.transfer.errors import UnsafeNameError
from zcopy.transfer.names import NAME_MAX, PARTIAL_SUFFIX, check_tree, partial_name, split_name


@pytest.mark.parametrize(
    "name,parts",
    [
        (b"a", (b"a",)),
        (b"dir/sub/file.txt", (b"dir", b"sub", b"file.txt")),
        (b"...", (b"...",)),
        (b"..a/b..", (b"..a", b"b..")),
        ("ünï/☃".encode(), ("ünï".encode(), "☃".encode())),
        (b"\xff\xfe", (b"\xff\xfe",)),  # not UTF-8 but a legal Linux name
    ],
)
def test_safe_names(name: bytes, parts: tuple[bytes, ...]) -> None:
    assert split_name(name) == parts


@pytest.mark.parametrize(
    "name,why",
    [
        (b"", "empty"),
        (b"/etc/passwd", "absolute"),
        (b"//etc", "absolute"),
        (b"..", "'..'"),
        (b"../x", "'..'"),
        (b"a/../../x", "'..'"),
        (b"a/..", "'..'"),
        (b"./a", "'.'"),
        (b"a//b", "empty"),
        (b"a/", "empty"),
        (b"a\x00b", "NUL"),
        (b"..\\..\\etc\\passwd", "backslash"),
        (b"a\\b", "backslash"),
        (b"C:\\x", "backslash"),
        (b"a" * (NAME_MAX + 1), "longer than 255"),
        (b"a/" * 2048 + b"a", "longer than 4095"),
        (b"x" + PARTIAL_SUFFIX, "partial-file suffix"),
    ],
)
def test_unsafe_names(name: bytes, why: str) -> None:
    with pytest.raises(UnsafeNameError, match=re.escape(why)):
        split_name(name)


def test_partial_names_are_hidden_deterministic_and_fit() -> None:
    assert partial_name(b"f.txt") == b".f.txt" + PARTIAL_SUFFIX
    long = b"x" * NAME_MAX
    assert len(partial_name(long)) <= NAME_MAX
    assert partial_name(long) == partial_name(long) != partial_name(b"y" * NAME_MAX)
    # A partial name is never an acceptable manifest name, so nothing sent can collide with a partial.
    with pytest.raises(UnsafeNameError):
        split_name(partial_name(b"f.txt"))


def test_tree_checks() -> None:
    check_tree([(b"d", True), (b"d/f", False), (b"d/e", True), (b"g", False)])
    with pytest.raises(UnsafeNameError, match="duplicate"):
        check_tree([(b"d", True), (b"d", False)])
    with pytest.raises(UnsafeNameError, match="under a name that is a file"):
        check_tree([(b"f", False), (b"f/x", False)])
    with pytest.raises(UnsafeNameError, match=r"'\.\.'"):
        check_tree([(b"ok", False), (b"../bad", False)])


def test_tree_check_streams_and_catches_a_file_under_a_later_or_earlier_parent() -> None:
    from zcopy.transfer.names import TreeCheck

    t = TreeCheck()
    for name, is_dir in [(b"d", True), (b"d/e", True), (b"d/e/f", False), (b"g", False)]:
        t.add(name, is_dir)
    with pytest.raises(UnsafeNameError, match="file, not a directory"):
        t.add(b"g/x", False)
    t = TreeCheck()
    t.add(b"a/b/c", False)  # children first, parent "a/b" named later as a file: caught either way
    with pytest.raises(UnsafeNameError, match="other names lie under it"):
        t.add(b"a/b", False)
