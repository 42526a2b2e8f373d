"""Pure scanning for `zcopy replace`: find OLD in a buffer window by window and say what replaces what.

No I/O here: the caller hands a buffer (bytes, an mmap) and optionally a ``read(start, end) -> bytes`` that
copies one window out of it. Semantics are exactly ``bytes.replace`` (literal, left-to-right, non-overlapping,
``count``) and ``re.sub`` (regex, group references in NEW); the tests check that on random data.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

# One window is 1 MiB: small enough that copy-out, split, compare and copy-in stay in the CPU's L2/L3 cache,
# and a few MiB of window keep anonymous memory far below the 64 MiB budget (`python bench/replace.py` reports
# the peak RssAnon it reaches).
DEFAULT_WINDOW = 1 << 20

# The granule at which a same-length window is compared and stored back: one page, the unit the kernel
# marks dirty and writes back. Storing unchanged bytes in a page a change already dirtied costs no extra I/O.
DEFAULT_GRANULE = 4096

# Matches are handed out as exact edits in batches of at most this many, so memory stays bounded however many
# matches the file holds (an Edit is ~100 bytes: 4096 of them is < 1 MiB).
EDIT_BATCH = 4096

# A window is split at no more than window // 16 matches: bytes.join keeps one Py_buffer (80 bytes) per piece
# while it runs, so a 1 MiB window of a 1-byte OLD matching everywhere would need 80 MiB at once; capped, join
# needs ≤ 5 windows. A denser window ends after that many matches and the next one starts there.
BYTES_PER_PIECE = 16


class Edit(NamedTuple):
    """Replace source bytes [start, end) (absolute offsets) by ``new``; start == end is an insertion."""

    start: int
    end: int
    new: bytes


@dataclass(frozen=True)
class Spec:
    """What to replace: OLD → NEW as bytes; ``count`` 0 means all matches (like ``re.sub``)."""

    old: bytes
    new: bytes
    regex: bool = False
    ignore_case: bool = False
    count: int = 0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must be >= 0 (0 replaces every match)")
        if not self.regex and not self.old:
            # bytes.replace(b"", X) inserts X between every byte: never what an editing tool means.
            raise ValueError("OLD must not be empty")
        if self.regex:
            self.compile()  # re.error surfaces now, not after the file was opened

    def compile(self) -> re.Pattern[bytes]:
        """The pattern as compiled ``re`` (a literal OLD is escaped), used for regex and ignore-case scans."""
        pattern = self.old if self.regex else re.escape(self.old)
        return re.compile(pattern, re.IGNORECASE if self.ignore_case else 0)

    @property
    def same_length(self) -> bool:
        """True when every replacement is as long as its match, so the file can be edited in place."""
        return not self.regex and len(self.new) == len(self.old)


@dataclass(frozen=True)
class Chunk:
    """A source region [start, end) and what becomes of it; the chunks from `scan` tile the whole buffer.

    Exactly one representation carries the changes:
    - ``edits``: exact per-match edits (sparse windows, regex, count-limited windows); ``[]`` = unchanged;
    - bulk (``edits is None``): ``old[:end - start]`` are the source bytes, ``new[:new_len]`` the bytes that
      replace them (dense windows: built by C-level split/join, no per-match Python work).
    """

    start: int
    end: int
    matches: int
    edits: list[Edit] | None = None
    old: bytes = b""
    new: bytes = b""
    new_len: int = 0
    replaced: int | None = None  # bytes the matches covered, when not matches × len(OLD) (regex bulk chunks)

    @property
    def changed(self) -> bool:
        return self.matches > 0

    @property
    def delta(self) -> int:
        """Length of the replacement content minus length of the source region."""
        if self.edits is not None:
            return sum(len(e.new) - (e.end - e.start) for e in self.edits)
        return self.new_len - (self.end - self.start)

    def output(self) -> Iterator[tuple[int, int] | bytes | memoryview]:
        """What the region becomes, in order: ``(a, b)`` = source bytes [a, b) unchanged, bytes = new content.

        Unchanged spans come as ranges so the caller may move them in-kernel; a bulk chunk yields its whole
        new content as one piece.
        """
        if self.edits is None:
            # A view, not a slice: slicing would copy the window once more.
            yield self.new if self.new_len == len(self.new) else memoryview(self.new)[: self.new_len]
            return
        pos = self.start
        for e in self.edits:
            if e.start > pos:
                yield (pos, e.start)
            if e.new:
                yield e.new
            pos = e.end
        if self.end > pos:
            yield (pos, self.end)


def effective_window(spec: Spec, window: int) -> int:
    """The window actually used: it holds at least one match, and its replaced copy stays ≤ ``window`` bytes.

    A NEW k times longer than OLD can grow a window k-fold, so the window shrinks by that factor: anonymous
    memory is bounded by a few windows whatever OLD and NEW are.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    n_old = len(spec.old)
    if spec.regex:
        return window
    return max(n_old, window * n_old // max(n_old, len(spec.new)))


def scan(
    spec: Spec,
    buf: bytes | bytearray | memoryview | object,
    size: int,
    *,
    window: int = DEFAULT_WINDOW,
    read: Callable[[int, int], bytes] | None = None,
    sparse_limit: int | None = None,
) -> Iterator[Chunk]:
    """Yield `Chunk`s tiling [0, size) of ``buf`` with the matches of ``spec``, left to right.

    Literal OLD: each step copies one window ``read(s, s + window)`` (default ``bytes(buf[s:e])``) and splits
    it at OLD in C; a match crossing the window's end is left for the next window, which starts where the last
    match ended or ``len(OLD) - 1`` bytes before the end (whichever is later), so every match is found
    exactly once and the non-overlapping left-to-right choice is the same as over the whole buffer.
    Regex: ``re`` runs over ``buf`` itself (an mmap or bytes: no copy). It is not windowed: a window edge
    would change what ``$``, ``\\b``, lookarounds and greedy repeats match. Batching edits bounds memory.
    ``sparse_limit``: windows with at most this many matches report exact edits, others report bulk content
    (default: one match per page on average).
    """
    if spec.regex:
        yield from _scan_regex(spec, buf, size, window, window // DEFAULT_GRANULE if sparse_limit is None
                               else sparse_limit)  # fmt: skip
        return
    if read is None:
        view = memoryview(buf)  # type: ignore[arg-type]

        def read(a: int, b: int) -> bytes:
            return bytes(view[a:b])

    win = effective_window(spec, window)
    if sparse_limit is None:
        sparse_limit = win // DEFAULT_GRANULE
    yield from _scan_literal(spec, read, size, win, sparse_limit)


def _scan_literal(
    spec: Spec, read: Callable[[int, int], bytes], size: int, win: int, sparse_limit: int
) -> Iterator[Chunk]:
    old, new = spec.old, spec.new
    n_old = len(old)
    key = old.lower() if spec.ignore_case else old
    remaining = spec.count if spec.count else -1  # -1: unlimited
    pieces_max = max(1, win // BYTES_PER_PIECE)
    s = 0
    while s < size:
        if remaining == 0:
            yield Chunk(s, size, 0, [])
            return
        x = min(size, s + win)
        chunk = read(s, x)
        if len(chunk) != x - s:
            raise ValueError(f"read({s}, {x}) returned {len(chunk)} bytes")
        # bytes.lower() folds ASCII only, exactly what re.IGNORECASE does for a bytes pattern.
        hay = chunk.lower() if spec.ignore_case else chunk
        limit = pieces_max if remaining < 0 else min(remaining, pieces_max)
        pieces = hay.split(key, limit)
        k = len(pieces) - 1
        t = x - len(pieces[-1])  # end of the last match in this window (s if none)
        if k == limit:
            c = t  # count reached, or a very dense window: continue right after the last match taken
        elif x == size:
            c = size
        else:
            # A match starting at or after x - n_old + 1 may run past x: leave those bytes to the next window.
            c = max(t, x - n_old + 1)
        if remaining > 0:
            remaining -= k
        if k == 0:
            yield Chunk(s, c, 0, [])
            s = c
            continue
        if k <= min(sparse_limit, EDIT_BATCH):
            edits: list[Edit] = []
            pos = s
            for p in pieces[:-1]:
                pos += len(p)
                edits.append(Edit(pos, pos + n_old, new))
                pos += n_old
            yield Chunk(s, c, k, edits)
        else:
            if spec.ignore_case:
                # Split the original bytes at the positions found in the folded copy (same lengths).
                orig: list[bytes] = []
                pos = 0
                for p in pieces[:-1]:
                    orig.append(chunk[pos : pos + len(p)])
                    pos += len(p) + n_old
                orig.append(chunk[pos:])
                pieces = orig
            full = new.join(pieces)
            yield Chunk(s, c, k, None, chunk, full, len(full) - (x - c))
        s = c


def _scan_regex(spec: Spec, buf: object, size: int, window: int, sparse_limit: int) -> Iterator[Chunk]:
    """The matches of ``re`` over the whole buffer, in batches that end at a match once they span ``window``
    bytes or hold window // BYTES_PER_PIECE matches.

    A batch with at most ``sparse_limit`` matches becomes exact edits (its long unchanged spans can move
    in-kernel); a denser one becomes bulk content built in C: the spans come from ``map(Match.span, finditer)``,
    the region is copied out once and its unchanged stretches joined with NEW. Per match that leaves re's own
    search and a few list operations (an Edit and Match.expand per match took 36.7 s for issue 21's 4.46 M
    matches, against sed's 10.5 s).
    """
    rx = spec.compile()
    expand = _expander(rx, spec.new)
    found: Iterator[re.Match[bytes]] = rx.finditer(buf, 0, size)  # type: ignore[call-overload]
    if spec.count:
        found = itertools.islice(found, spec.count)
    cap = max(1, window // BYTES_PER_PIECE)
    view = memoryview(buf)  # type: ignore[arg-type]  # (a MappedBuffer's own slicing is a Python method)
    try:
        spans: list[tuple[int, int]] = []
        news: list[bytes] = []  # the replacements, when they depend on the match (group references)
        s = 0  # where this batch starts
        fixed = expand if isinstance(expand, bytes) else None  # NEW when it is the same for every match
        if fixed is not None:
            for span in map(re.Match.span, found):
                spans.append(span)
                if span[1] - s >= window or len(spans) >= cap:
                    yield from _regex_batches(view, s, spans, None, fixed, sparse_limit, window)
                    s, spans = span[1], []
        elif callable(expand):
            for m in found:
                span = m.span()
                spans.append(span)
                news.append(expand(m))
                if span[1] - s >= window or len(spans) >= cap:
                    yield from _regex_batches(view, s, spans, news, b"", sparse_limit, window)
                    s, spans, news = span[1], [], []
        if spans:
            yield from _regex_batches(view, s, spans, None if fixed is not None else news, fixed or b"",
                                      sparse_limit, window)  # fmt: skip
            s = spans[-1][1]
        if s < size or size == 0:
            yield Chunk(s, size, 0, [])
    finally:
        view.release()


def _regex_batches(
    view: memoryview,
    s: int,
    spans: list[tuple[int, int]],
    news: list[bytes] | None,
    new: bytes,
    sparse_limit: int,
    window: int,
) -> Iterator[Chunk]:
    """_regex_batch, except that a batch whose last match lies far beyond the others (a long unchanged stretch
    before it, or a long match) leaves that match to an exact edit: bulk content never copies more than a window
    of unchanged bytes."""
    if len(spans) > 1 and spans[-1][1] - spans[-2][1] > window:
        head = _regex_batch(view, s, spans[:-1], news[:-1] if news is not None else None, new, sparse_limit)
        a, b = spans[-1]
        yield head
        yield Chunk(head.end, b, 1, [Edit(a, b, news[-1] if news is not None else new)])
    else:
        yield _regex_batch(view, s, spans, news, new, sparse_limit)


def _regex_batch(
    view: memoryview, s: int, spans: list[tuple[int, int]], news: list[bytes] | None, new: bytes, sparse_limit: int
) -> Chunk:
    """The chunk [s, end of the last match) for these matches; ``news`` per match, else ``new`` for each."""
    k = len(spans)
    e = spans[-1][1]
    if k <= min(sparse_limit, EDIT_BATCH):
        reps = news if news is not None else [new] * k
        return Chunk(s, e, k, [Edit(a, b, r) for (a, b), r in zip(spans, reps, strict=True)])
    bounds = [s, *itertools.chain.from_iterable(spans), e]  # s, a0, b0, a1, b1, ..., e
    replaced = sum(bounds[2:-1:2]) - sum(bounds[1:-1:2])
    # One copy of the region, then bytes slices of it: cheaper per piece than views into the mapping.
    region = bytes(view[s:e])
    edges = iter(bounds)
    gaps = [region[p - s : q - s] for p, q in zip(edges, edges, strict=True)]  # the k + 1 unchanged stretches
    if news is None:
        full = new.join(gaps)
    else:
        pieces: list[bytes | memoryview] = [gaps[0]]
        for r, gap in zip(news, gaps[1:], strict=True):
            pieces += (r, gap)
        full = b"".join(pieces)
    return Chunk(s, e, k, None, b"", full, len(full), replaced)


def _expander(rx: re.Pattern[bytes], template: bytes) -> bytes | Callable[[re.Match[bytes]], bytes]:
    """NEW for ``re.sub``: the replacement itself when it has no group references, else a function of the match.

    ``Match.expand`` re-enters the re module's Python code on every call (~5 µs here); re's own template parser,
    run once, gives the literal pieces and group numbers, and the function only fetches the groups. Where that
    parser is not as expected (it is internal: ``re._compile_repl`` up to 3.11, ``re._parser.parse_template``
    after), ``Match.expand`` it is, whose result is the same.
    """
    if b"\\" not in template:
        return template
    parsed = _parse_template(rx, template)
    if parsed is None:
        return lambda m: m.expand(template)
    lits, groups = parsed
    if not groups:
        return lits[0]
    if len(groups) == 1:
        head, tail = lits
        (g,) = groups
        return lambda m: head + (m.group(g) or b"") + tail

    def expand(m: re.Match[bytes]) -> bytes:
        out = [lits[0]]
        for value, lit in zip(m.group(*groups), lits[1:], strict=True):
            out += (value or b"", lit)  # a group that did not take part is empty, as in re.sub
        return b"".join(out)

    return expand


def _parse_template(rx: re.Pattern[bytes], template: bytes) -> tuple[list[bytes], list[int]] | None:
    """(literals, groups) with NEW = literals[0] + group[0] + literals[1] + ...; None if re's parser is not the
    shape this expects (a bad template still raises re.error, as re.sub would)."""
    lits: list[bytes] = []
    groups: list[int] = []
    if hasattr(re, "_compile_repl"):  # ≤ 3.11: ([(index, group)], literals with None at the groups)
        where, literals = re._compile_repl(template, rx)
        at = dict(where)
        cur = b""
        for i, lit in enumerate(literals):
            if lit is None:
                lits.append(cur)
                groups.append(at[i])
                cur = b""
            else:
                cur += lit
        lits.append(cur)
    else:  # 3.12+: [literal, group, literal, ..., literal]
        parts = re._parser.parse_template(template, rx)  # type: ignore[attr-defined]
        lits = [p or b"" for p in parts[0::2]]
        groups = list(parts[1::2])
    if len(lits) != len(groups) + 1 or not all(isinstance(x, bytes) for x in lits):
        return None
    if not all(isinstance(g, int) and 0 <= g <= rx.groups for g in groups):
        return None
    return lits, groups


def apply(chunks: Iterator[Chunk], source: bytes) -> bytes:
    """The whole replaced content, assembled from `scan`'s chunks (for tests and small inputs)."""
    out: list[bytes] = []
    for ch in chunks:
        for piece in ch.output():
            out.append(source[piece[0] : piece[1]] if isinstance(piece, tuple) else bytes(piece))
    return b"".join(out)


def changed_blocks(old: bytes, new: bytes, length: int, base: int, granule: int) -> list[tuple[int, int]]:
    """Coalesced [lo, hi) offsets (relative to ``base``) of the granules where old[:length] != new[:length].

    Granules are aligned to absolute offsets (``base`` is where ``old`` starts in the file) so a stored block
    never straddles a page it did not change.
    """
    spans: list[tuple[int, int]] = []
    view = memoryview(new)
    lo = 0
    hi = min(length, granule - base % granule)
    while lo < length:
        # startswith(view, lo) is a memcmp without copying either side (slicing both: ~2x slower here).
        if not old.startswith(view[lo:hi], lo):
            if spans and spans[-1][1] == lo:
                spans[-1] = (spans[-1][0], hi)
            else:
                spans.append((lo, hi))
        lo, hi = hi, min(length, hi + granule)
    view.release()
    return spans
