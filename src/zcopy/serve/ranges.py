"""Range header math for one representation (RFC 9110 §14): parse, resolve against a size, coalesce, cap (pure).

Policy (documented in docs/serve.md): a syntactically invalid Range, a unit other than bytes, more than
MAX_RANGES ranges, or requested ranges whose lengths add up to more than the file (overlap abuse, Apache
"Killer" CVE-2011-3192) → the header is ignored and the full file is sent (200). Valid but none satisfiable → 416.
Satisfiable ranges are sorted and merged when they overlap or touch: O(n log n), never O(n²).
"""

from __future__ import annotations

# nginx max_ranges is unlimited by default; starlette caps at 100 ranges, which no real client
# (PDF viewers, download managers) comes near. More than this → ignore Range and send 200.
MAX_RANGES = 100

# Numbers with more digits than this exceed any file size (10**18 B = 1 EB > 2**59) and int("9"*5000) raises in
# CPython ≥ 3.11 (int max str digits); such values are treated as "larger than any file", never parsed.
MAX_DIGITS = 18
_HUGE = 1 << 63

Span = tuple[int, int]  # [start, end) byte offsets


def _number(text: bytes) -> int | None:
    """1*DIGIT → int (huge values clamp to 2**63), None when not digits."""
    if not text or not text.isdigit():
        return None
    if len(text) > MAX_DIGITS:
        return _HUGE
    return int(text)


def parse(value: bytes) -> list[tuple[int | None, int | None]] | None:
    """Parse a Range value into (first, last) pairs (None for an omitted side); None when it must be ignored."""
    unit, eq, spec = value.partition(b"=")
    if not eq or unit.strip().lower() != b"bytes":
        return None
    out: list[tuple[int | None, int | None]] = []
    for item in spec.split(b","):
        item = item.strip(b" \t")
        if not item:
            continue  # RFC 9110 §5.6.1: recipients accept empty list elements
        if len(out) >= MAX_RANGES:
            return None
        first_s, dash, last_s = item.partition(b"-")
        if not dash:
            return None
        first = _number(first_s) if first_s else None
        last = _number(last_s) if last_s else None
        if (first_s and first is None) or (last_s and last is None) or (first is None and last is None):
            return None
        if first is not None and last is not None and last < first:
            return None  # RFC 9110 §14.1.1: last-pos < first-pos makes the whole ranges-specifier invalid
        out.append((first, last))
    return out or None


def resolve(specs: list[tuple[int | None, int | None]], size: int) -> list[Span] | None:
    """Resolve parsed specs against ``size``: coalesced spans ([] → 416), or None → ignore Range (send 200)."""
    if size <= 0:
        return None  # an empty representation has no byte to point at; a server MAY ignore Range (§14.2)
    spans: list[Span] = []
    requested = 0
    for first, last in specs:
        if first is None:
            assert last is not None
            if last == 0:
                continue  # suffix of zero bytes is unsatisfiable
            start, end = max(0, size - last), size
        else:
            if first >= size:
                continue
            start, end = first, size if last is None else min(last + 1, size)
        requested += end - start
        spans.append((start, end))
    if requested > size:
        return None  # more bytes asked than the file has: overlap abuse; answer with the plain file
    if not spans:
        return []
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            if end > last_end:
                merged[-1] = (last_start, end)
        else:
            merged.append((start, end))
    return merged


def ranges_for(value: bytes, size: int) -> list[Span] | None:
    """parse + resolve: None → 200 full body, [] → 416, otherwise the spans for a 206."""
    specs = parse(value)
    return None if specs is None else resolve(specs, size)


def content_range(span: Span, size: int) -> bytes:
    """Content-Range value for one span: ``bytes first-last/size``."""
    return b"bytes %d-%d/%d" % (span[0], span[1] - 1, size)


def multipart_parts(spans: list[Span], size: int, content_type: bytes, boundary: bytes) -> tuple[list[bytes], bytes]:
    """Per-part headers and the closing delimiter for multipart/byteranges (RFC 9110 §14.6), CRLF framed.

    Part i's header precedes the bytes of spans[i]; the body length is sum(len(headers)) + span bytes + len(tail).
    """
    heads = [
        b"\r\n--%s\r\nContent-Type: %s\r\nContent-Range: %s\r\n\r\n" % (boundary, content_type, content_range(s, size))
        for s in spans
    ]
    return heads, b"\r\n--%s--\r\n" % boundary
