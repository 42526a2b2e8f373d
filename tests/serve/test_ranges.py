from __future__ import annotations

import random

import pytest

from zcopy.serve.ranges import MAX_RANGES, content_range, multipart_parts, parse, ranges_for, resolve


@pytest.mark.parametrize(
    ("value", "size", "want"),
    [
        (b"bytes=0-499", 1000, [(0, 500)]),
        (b"bytes=500-", 1000, [(500, 1000)]),
        (b"bytes=-500", 1000, [(500, 1000)]),
        (b"bytes=-5000", 1000, [(0, 1000)]),
        (b"bytes=0-0,-1", 1000, [(0, 1), (999, 1000)]),
        (b"bytes=990-5000", 1000, [(990, 1000)]),
        (b"BYTES = 1-2", 10, [(1, 3)]),
        (b"bytes=0-1, , 5-6", 10, [(0, 2), (5, 7)]),
        (b"bytes=5-6,0-1", 10, [(0, 2), (5, 7)]),  # sorted
        (b"bytes=0-3,2-5", 10, [(0, 6)]),  # overlapping → merged
        (b"bytes=0-3,4-5", 10, [(0, 6)]),  # adjacent → merged
        (b"bytes=1000-2000", 1000, []),  # unsatisfiable → 416
        (b"bytes=-0", 1000, []),
        (b"bytes=1000-,5-", 1000, [(5, 1000)]),  # unsatisfiable ones dropped
    ],
)
def test_ranges(value: bytes, size: int, want: list[tuple[int, int]]) -> None:
    assert ranges_for(value, size) == want


@pytest.mark.parametrize(
    "value",
    [
        b"bytes=5-1",
        b"bytes=a-b",
        b"bytes=-",
        b"bytes=1",
        b"items=0-1",
        b"bytes",
        b"bytes=",
        b"bytes=1-2-3",
        b"bytes=+1-2",
        b"bytes= 0x1-2",
        b"bytes=1.0-2",
    ],
)
def test_invalid_syntax_is_ignored(value: bytes) -> None:
    assert ranges_for(value, 1000) is None


def test_empty_file_ignores_range() -> None:
    assert ranges_for(b"bytes=0-", 0) is None


def test_huge_numbers_are_safe() -> None:
    big = b"9" * 5000  # int() of this raises in CPython 3.11 (max str digits): must never be parsed
    assert ranges_for(b"bytes=0-" + big, 10) == [(0, 10)]
    assert ranges_for(b"bytes=" + big + b"-", 10) == []
    assert ranges_for(b"bytes=-" + big, 10) == [(0, 10)]
    assert ranges_for(b"bytes=18446744073709551615-18446744073709551616", 10) == []


def test_too_many_ranges_is_ignored() -> None:
    ok = b"bytes=" + b",".join(b"%d-%d" % (i * 10, i * 10) for i in range(MAX_RANGES))
    assert len(ranges_for(ok, 10_000) or []) == MAX_RANGES
    over = b"bytes=" + b",".join(b"%d-%d" % (i * 10, i * 10) for i in range(MAX_RANGES + 1))
    assert ranges_for(over, 10_000) is None


def test_overlap_abuse_is_ignored() -> None:
    assert ranges_for(b"bytes=0-,0-", 100) is None
    assert ranges_for(b"bytes=" + b",".join([b"0-99"] * 50), 100) is None


class _Counted(int):
    """An int that counts the comparisons made on it: a measure of work that no machine load can change."""

    calls = 0

    def _count(self) -> None:
        _Counted.calls += 1

    def __lt__(self, other: object) -> bool:
        self._count()
        return int.__lt__(self, other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        self._count()
        return int.__le__(self, other)  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        self._count()
        return int.__gt__(self, other)  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        self._count()
        return int.__ge__(self, other)  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        self._count()
        return int.__eq__(self, other)

    __hash__ = int.__hash__


def _comparisons(n: int) -> int:
    order = list(range(1, n + 1))
    random.Random(n).shuffle(order)  # a fixed shuffle: sorted or reversed input would let a bad sort off lightly
    specs: list[tuple[int | None, int | None]] = [(_Counted(i), _Counted(i)) for i in order]
    _Counted.calls = 0
    out = resolve(specs, 1 << 30)  # bypasses the header cap: the math itself must scale
    assert out == [(1, n + 1)]
    return _Counted.calls


def test_coalescing_is_not_quadratic() -> None:
    small, large = _comparisons(2_000), _comparisons(32_000)
    # 16x the ranges: n log n costs ~20x the comparisons, a quadratic merge 256x.
    assert large < 40 * small, (small, large)


def test_parse_keeps_open_sides() -> None:
    assert parse(b"bytes=1-,-2,3-4") == [(1, None), (None, 2), (3, 4)]


def test_multipart_framing_is_crlf() -> None:
    heads, tail = multipart_parts([(0, 2), (5, 7)], 10, b"text/plain", b"BOUND")
    assert heads[0] == b"\r\n--BOUND\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n"
    assert heads[1].startswith(b"\r\n--BOUND\r\n") and b"bytes 5-6/10" in heads[1]
    assert tail == b"\r\n--BOUND--\r\n"
    assert content_range((0, 10), 10) == b"bytes 0-9/10"
