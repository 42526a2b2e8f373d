"""Validators and conditional requests (RFC 9110 §8.8, §13): ETag, HTTP dates, the precondition order (pure).

The ETag is strong and built from (inode, size, mtime_ns): any change to the bytes a client could have seen
changes at least one of them. Last-Modified has one-second resolution, so date comparisons use whole seconds.
"""

from __future__ import annotations

import calendar
import email.utils
import time

_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"", b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


def make_etag(ino: int, size: int, mtime_ns: int) -> bytes:
    """A strong entity-tag, quoted, as sent in the ETag header."""
    return b'"%x-%x-%x"' % (ino, size, mtime_ns)


def http_date(seconds: float) -> bytes:
    """IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(seconds)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday],
        t.tm_mday,
        _MONTHS[t.tm_mon],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch from IMF-fixdate, RFC 850 or asctime (all three MUST be accepted); None if invalid."""
    try:
        parsed = email.utils.parsedate_tz(value.decode("latin-1"))
    except (ValueError, IndexError, TypeError):
        return None
    if parsed is None:
        return None
    try:
        return calendar.timegm(parsed[:9]) - (parsed[9] or 0)
    except (ValueError, OverflowError, TypeError):
        return None


def _tags(value: bytes) -> list[bytes] | None:
    """Entity-tags of an If-(None-)Match list (opaque part with quotes, W/ kept); None for ``*``."""
    if value.strip() == b"*":
        return None
    tags = []
    for item in value.split(b","):
        item = item.strip(b" \t")
        if item:
            tags.append(item)
    return tags


def _opaque(tag: bytes) -> bytes:
    return tag[2:] if tag[:2] == b"W/" else tag


def matches(value: bytes, etag: bytes, *, weak: bool) -> bool:
    """Does the list in ``value`` match ``etag``? Weak comparison ignores W/; strong needs both strong (§8.8.3.2)."""
    tags = _tags(value)
    if tags is None:
        return True
    if weak:
        mine = _opaque(etag)
        return any(_opaque(t) == mine for t in tags)
    return etag[:2] != b"W/" and etag in tags


def precondition(
    *,
    etag: bytes,
    mtime: int,
    if_match: bytes | None,
    if_unmodified_since: bytes | None,
    if_none_match: bytes | None,
    if_modified_since: bytes | None,
) -> int | None:
    """RFC 9110 §13.2.2 evaluation order for GET/HEAD: 412, 304, or None (go on and serve)."""
    if if_match is not None:
        if not matches(if_match, etag, weak=False):
            return 412
    elif if_unmodified_since is not None:
        date = parse_http_date(if_unmodified_since)
        if date is not None and mtime > date:
            return 412
    if if_none_match is not None:
        if matches(if_none_match, etag, weak=True):
            return 304
    elif if_modified_since is not None:
        date = parse_http_date(if_modified_since)
        if date is not None and mtime <= date:
            return 304
    return None


def if_range_holds(value: bytes, *, etag: bytes, mtime: int) -> bool:
    """If-Range (§13.1.5): an entity-tag must match strongly, a date must equal Last-Modified exactly."""
    value = value.strip()
    if value[:1] == b'"' or value[:2] == b"W/":
        return value[:2] != b"W/" and value == etag
    date = parse_http_date(value)
    return date is not None and date == mtime
