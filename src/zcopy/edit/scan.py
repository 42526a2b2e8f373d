"""Pure scanning for `zcopy replace`: find OLD in a buffer window by window and say what replaces what.

No I/O here: the caller hands a buffer (bytes, an mmap) and optionally a ``read(start, end) -> bytes`` that
copies one window out of it. Semantics are exactly ``bytes.replace`` (literal, left-to-right, non-overlapping,
``count``) and ``re.sub`` (regex, group references in NEW); the tests check that on random data.
"""

from __future__ import annotations

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
        yield from _scan_regex(spec, buf, size, window)
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


def _scan_regex(spec: Spec, buf: object, size: int, window: int) -> Iterator[Chunk]:
    rx = spec.compile()
    template = spec.new
    literal = b"\\" not in template  # no escapes or group references: the template is the replacement
    edits: list[Edit] = []
    s = 0
    for n, m in enumerate(rx.finditer(buf, 0, size), 1):  # type: ignore[call-overload]
        a, b = m.span()
        edits.append(Edit(a, b, template if literal else m.expand(template)))
        if spec.count and n == spec.count:
            break
        if len(edits) >= EDIT_BATCH or b - s >= window:
            yield Chunk(s, b, len(edits), edits)
            s, edits = b, []
    if edits:
        end = edits[-1].end
        yield Chunk(s, end, len(edits), edits)
        s = end
    if s < size or size == 0:
        yield Chunk(s, size, 0, [])


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
