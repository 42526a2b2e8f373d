from __future__ import annotations

import pytest

from zcopy.serve.conditional import http_date, if_range_holds, make_etag, matches, parse_http_date, precondition

ETAG = make_etag(0x1234, 100, 999)
T = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT


def test_http_date_round_trips_all_three_formats() -> None:
    assert http_date(T) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    for text in (b"Sun, 06 Nov 1994 08:49:37 GMT", b"Sunday, 06-Nov-94 08:49:37 GMT", b"Sun Nov  6 08:49:37 1994"):
        assert parse_http_date(text) == T
    assert parse_http_date(b"yesterday") is None
    assert parse_http_date(b"\xff\xfe") is None


def test_etag_is_strong_and_changes_with_each_field() -> None:
    assert ETAG.startswith(b'"') and ETAG.endswith(b'"')
    assert len({make_etag(1, 2, 3), make_etag(9, 2, 3), make_etag(1, 9, 3), make_etag(1, 2, 9)}) == 4


def test_matches_weak_and_strong() -> None:
    assert matches(b"*", ETAG, weak=False)
    assert matches(b'"x", ' + ETAG, ETAG, weak=True)
    assert matches(b"W/" + ETAG, ETAG, weak=True)
    assert not matches(b"W/" + ETAG, ETAG, weak=False)
    assert not matches(b'"other"', ETAG, weak=True)


def pc(**kw: bytes) -> int | None:
    args: dict[str, bytes | None] = dict.fromkeys(
        ("if_match", "if_unmodified_since", "if_none_match", "if_modified_since"), None
    )
    args.update(kw)
    return precondition(etag=ETAG, mtime=T, **args)


def test_precondition_order() -> None:
    assert pc() is None
    assert pc(if_none_match=ETAG) == 304
    assert pc(if_none_match=b"W/" + ETAG) == 304  # weak comparison for If-None-Match
    assert pc(if_none_match=b'"nope"') is None
    assert pc(if_modified_since=http_date(T)) == 304
    assert pc(if_modified_since=http_date(T - 1)) is None
    # If-Modified-Since is ignored when If-None-Match is present
    assert pc(if_none_match=b'"nope"', if_modified_since=http_date(T + 10)) is None
    assert pc(if_match=b'"nope"') == 412
    assert pc(if_match=b"W/" + ETAG) == 412  # strong comparison for If-Match
    assert pc(if_match=ETAG, if_none_match=ETAG) == 304
    assert pc(if_unmodified_since=http_date(T - 1)) == 412
    assert pc(if_unmodified_since=http_date(T)) is None
    # If-Unmodified-Since is ignored when If-Match is present
    assert pc(if_match=ETAG, if_unmodified_since=http_date(T - 1)) is None
    assert pc(if_modified_since=b"garbage") is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (ETAG, True),
        (b"W/" + ETAG, False),
        (b'"other"', False),
        (http_date(T), True),
        (http_date(T + 1), False),
        (b"junk", False),
    ],
)
def test_if_range(value: bytes, ok: bool) -> None:
    assert if_range_holds(value, etag=ETAG, mtime=T) is ok
