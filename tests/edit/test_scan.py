"""The scanner against bytes.replace / re.sub on random data, with tiny windows so matches straddle edges."""

from __future__ import annotations

import itertools
import re
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zcopy.edit.scan import Chunk, Edit, Spec, apply, changed_blocks, effective_window, scan

# A two-letter alphabet makes matches, overlapping candidates (b"aa" in b"aaa") and edge matches common.
small = st.binary(max_size=200).map(lambda b: bytes(b"ab"[x & 1] for x in b))
pattern = st.binary(min_size=1, max_size=5).map(lambda b: bytes(b"ab"[x & 1] for x in b))
mixed_case = st.binary(max_size=200).map(lambda b: bytes(b"aAbB"[x & 3] for x in b))
# Tiny windows put matches on window edges; 48-256 byte windows hold several matches each (a window is split
# at no more than window // 16 matches, so those exercise multi-match windows and the density cap).
windows = st.one_of(st.integers(min_value=1, max_value=17), st.sampled_from([48, 100, 256]))
limits = st.sampled_from([0, 1, 10**9])  # sparse_limit: always bulk / mixed / always exact edits


def run(spec: Spec, data: bytes, window: int, sparse_limit: int | None = None) -> tuple[bytes, list[Chunk]]:
    chunks = list(scan(spec, data, len(data), window=window, sparse_limit=sparse_limit))
    return apply(iter(chunks), data), chunks


def check_tiling(chunks: list[Chunk], size: int) -> None:
    pos = 0
    for ch in chunks:
        assert ch.start == pos
        assert ch.end >= ch.start
        pos = ch.end
    assert pos == size


@settings(max_examples=1000, deadline=None)
@given(small, pattern, st.binary(max_size=6), windows, limits, st.integers(min_value=0, max_value=5))
def test_literal_matches_bytes_replace(data: bytes, old: bytes, new: bytes, window: int, sparse: int,
                                       count: int) -> None:
    spec = Spec(old, new, count=count)
    out, chunks = run(spec, data, window, sparse)
    expected = data.replace(old, new, count if count else -1)
    assert out == expected
    check_tiling(chunks, len(data))
    n = data.count(old)
    assert sum(c.matches for c in chunks) == (min(n, count) if count else n)


@settings(max_examples=200, deadline=None)
@given(small, pattern, windows, limits)
def test_new_containing_old_is_not_rescanned(data: bytes, old: bytes, window: int, sparse: int) -> None:
    new = old + b"x" + old
    out, _ = run(Spec(old, new), data, window, sparse)
    assert out == data.replace(old, new)


@settings(max_examples=300, deadline=None)
@given(mixed_case, pattern, st.binary(max_size=4), windows, limits, st.integers(min_value=0, max_value=3))
def test_ignore_case_matches_re_sub(data: bytes, old: bytes, new: bytes, window: int, sparse: int,
                                    count: int) -> None:
    out, chunks = run(Spec(old, new, ignore_case=True, count=count), data, window, sparse)
    expected = re.sub(re.escape(old), lambda m: new, data, count=count, flags=re.IGNORECASE)
    assert out == expected
    check_tiling(chunks, len(data))


regexes = st.sampled_from([b"a+", b"ab*", b"(a)(b)", b"b?", b"a|ab", b"(?m)^a", b"b$", b"a(?=b)", rb"\bab",
                           b"x*", b"(a+)b"])
templates = st.sampled_from([b"", b"X", rb"\g<0>\g<0>", rb"[\g<0>]", b"-", rb"\n"])


@settings(max_examples=300, deadline=None)
@given(small, regexes, templates, windows, limits, st.integers(min_value=0, max_value=4))
def test_regex_matches_re_sub(data: bytes, rx: bytes, template: bytes, window: int, sparse: int, count: int) -> None:
    out, chunks = run(Spec(rx, template, regex=True, count=count), data, window, sparse)
    assert out == re.sub(rx, template, data, count=count)
    check_tiling(chunks, len(data))
    covered = [m.end() - m.start() for m in itertools.islice(re.finditer(rx, data), count or None)]
    assert sum(c.matches for c in chunks) == len(covered)
    assert sum(replaced(c) for c in chunks) == sum(covered)  # what "bytes replaced" reports


def replaced(c: Chunk) -> int:
    if c.edits is not None:
        return sum(e.end - e.start for e in c.edits)
    assert c.replaced is not None  # a regex bulk chunk knows how much its matches covered
    return c.replaced


# NEW with group references, expanded from re's own parse of the template (not Match.expand per match): groups
# that did not take part, named groups, \g<0>, escapes and literal backslashes around them.
grouped = st.sampled_from([rb"(a)(b)?", rb"(?P<x>a+)(b*)", rb"(?P<x>a)|(b)", rb"(a)(?=(b))"])
group_templates = st.sampled_from([rb"\1", rb"<\2\1>", rb"\g<1>\\", rb"\g<0>\n\2", rb"\2\2\2", rb"x\1y\2z\g<0>"])


@settings(max_examples=300, deadline=None)
@given(small, grouped, group_templates, windows, limits, st.integers(min_value=0, max_value=3))
def test_regex_group_templates_match_re_sub(
    data: bytes, rx: bytes, template: bytes, window: int, sparse: int, count: int
) -> None:
    out, chunks = run(Spec(rx, template, regex=True, count=count), data, window, sparse)
    assert out == re.sub(rx, template, data, count=count)
    check_tiling(chunks, len(data))


def test_regex_group_references() -> None:
    data = b"key=1;name=zz;key=22"
    spec = Spec(rb"(\w+)=(\d+)", rb"\2=\1", regex=True)
    out, chunks = run(spec, data, 4)
    assert out == b"1=key;name=zz;22=key"
    assert sum(c.matches for c in chunks) == 2


def test_match_straddling_every_window_edge_found_once() -> None:
    data = b"xold" * 1000
    for window in range(3, 12):
        out, chunks = run(Spec(b"old", b"NEW"), data, window, 10**9)
        assert out == b"xNEW" * 1000
        assert sum(c.matches for c in chunks) == 1000
        edits = [e for c in chunks for e in (c.edits or [])]
        assert sorted({e.start for e in edits}) == list(range(1, 4000, 4))


def test_overlapping_candidates_pick_left_to_right() -> None:
    out, chunks = run(Spec(b"aa", b"b"), b"aaaaa", 2, 10**9)
    assert out == b"bba"
    assert [e for c in chunks for e in (c.edits or [])] == [Edit(0, 2, b"b"), Edit(2, 4, b"b")]


def test_bulk_chunk_keeps_lengths_for_in_place() -> None:
    data = b"old " * 5000
    chunks = list(scan(Spec(b"old", b"new"), data, len(data), window=4096, sparse_limit=0))
    assert all(c.edits is None for c in chunks if c.matches)
    for c in chunks:
        if c.edits is None:
            assert c.new_len == c.end - c.start
            assert c.new[: c.new_len] == data[c.start : c.end].replace(b"old", b"new")


def test_empty_old_and_bad_count_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Spec(b"", b"x")
    with pytest.raises(ValueError, match="count"):
        Spec(b"a", b"b", count=-1)
    with pytest.raises(re.error):
        Spec(b"(", b"", regex=True)


@pytest.mark.parametrize("ignore_case", [False, True])
def test_dense_windows_are_capped_but_exact(ignore_case: bool) -> None:
    data = b"aA" * 50_000
    spec = Spec(b"a", b"xy", ignore_case=ignore_case)
    out, chunks = run(spec, data, 1600)  # at most 100 matches per window
    expected = re.sub(b"a", b"xy", data, flags=re.IGNORECASE) if ignore_case else data.replace(b"a", b"xy")
    assert out == expected
    assert max(c.matches for c in chunks) <= effective_window(spec, 1600) // 16


def test_effective_window_shrinks_for_long_new() -> None:
    assert effective_window(Spec(b"abc", b"xyz"), 1 << 20) == 1 << 20
    assert effective_window(Spec(b"abc", b"x" * 30), 1 << 20) == (1 << 20) // 10
    assert effective_window(Spec(b"abcdef", b""), 4) == 6  # a window always holds one match


def test_reads_never_exceed_the_window_and_memory_stays_bounded() -> None:
    window = 64 << 10
    data = (b"the old fox " * 10) * (8 << 20 // 120)  # ~8 MiB: 128 windows
    reads: list[int] = []

    def read(a: int, b: int) -> bytes:
        reads.append(b - a)
        return data[a:b]

    spec = Spec(b"old", b"NEW")
    tracemalloc.start()
    try:
        total = 0
        for ch in scan(spec, data, len(data), window=window, read=read):
            total += ch.matches
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == data.count(b"old")
    assert max(reads) <= window
    assert len(reads) >= len(data) // window
    # One window copy, its split pieces and the joined result: a few windows, never the 8 MiB input.
    assert peak < 8 * window, peak


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=5000), st.sampled_from([1, 7, 64]))
def test_changed_blocks_cover_exactly_the_differences(data: bytes, base: int, granule: int) -> None:
    new = bytearray(data)
    for i in range(0, len(new), 37):
        new[i] ^= 1
    spans = changed_blocks(data, bytes(new), len(data), base, granule)
    patched = bytearray(data)
    for lo, hi in spans:
        assert (base + lo) % granule == 0 or lo == 0
        assert (base + hi) % granule == 0 or hi == len(data)
        patched[lo:hi] = new[lo:hi]
        assert data[lo:hi] != bytes(new[lo:hi])
    assert bytes(patched) == bytes(new)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))  # coalesced: never adjacent


@pytest.mark.parametrize(("old", "new", "data", "ignore_case", "window"), [
    (b"a", b"b", b"a" * (6 << 20), False, 1 << 20),  # a match at every byte: 6 M matches
    (b"a", b"", b"ab" * (1 << 18), True, 1 << 16),  # ignore-case goes match by match in Python: keep it small
    (b"a", b"b" * 16, b"a" * (6 << 20), False, 1 << 20),  # NEW 16x longer: the window shrinks
])
def test_memory_bounded_in_the_densest_cases(old: bytes, new: bytes, data: bytes, ignore_case: bool,
                                             window: int) -> None:
    tracemalloc.start()
    try:
        n = sum(c.matches for c in scan(Spec(old, new, ignore_case=ignore_case), data, len(data), window=window))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == len(re.findall(re.escape(old), data, flags=re.IGNORECASE if ignore_case else 0))
    assert peak < 16 * window, peak  # ~10 windows at worst, never a piece per match of the whole input


def test_regex_bulk_content_never_copies_a_long_unchanged_stretch() -> None:
    # Dense matches, then one far beyond a window: the dense ones become bulk content of at most two windows, the
    # far one an exact edit (its unchanged stretch can move in-kernel), whatever the batch boundaries.
    data = b"ab" * 40 + b"x" * 1000 + b"ab" + b"y" * 300
    for window in (64, 256):  # batches of up to window // 16 matches
        spec = Spec(b"a", b"AA", regex=True)
        out, chunks = run(spec, data, window, sparse_limit=1)
        assert out == re.sub(b"a", b"AA", data)
        check_tiling(chunks, len(data))
        bulk = [c for c in chunks if c.edits is None]
        assert bulk and all(c.end - c.start <= 2 * window for c in bulk)
        (far,) = [c for c in chunks if c.edits and c.edits[0].start == 1080]
        assert far.matches == 1
