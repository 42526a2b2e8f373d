from __future__ import annotations

import pytest

from zcopy.serve.target import TargetError, parse_target, percent_decode, quote, split_target


def test_origin_form_splits_query() -> None:
    assert split_target(b"/a/b?x=1&y") == (b"/a/b", b"x=1&y")


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"http://example.com/a/b?q", b"/a/b"),
        (b"HTTP://example.com:8080/x", b"/x"),
        (b"https://h/", b"/"),
        (b"http://h", b"/"),
        (b"http://h?q=1", b"/"),
    ],
)
def test_absolute_form_accepted(raw: bytes, path: bytes) -> None:
    assert split_target(raw)[0] == path


@pytest.mark.parametrize("raw", [b"*", b"example.com:443", b"ftp://h/x", b"http:///x", b"http://u@h/x", b"a/b", b""])
def test_other_forms_are_400(raw: bytes) -> None:
    with pytest.raises(TargetError) as e:
        split_target(raw)
    assert e.value.status == 400


def test_fragment_is_400() -> None:
    with pytest.raises(TargetError) as e:
        parse_target(b"/a#b")
    assert e.value.status == 400


def test_percent_decoding_happens_once() -> None:
    assert percent_decode(b"/a%20b") == b"/a b"
    # %2525 decodes to the three characters "%25", not to "%"
    assert parse_target(b"/x%2525y").segments == (b"x%25y",)


@pytest.mark.parametrize("raw", [b"/%", b"/%2", b"/%zz", b"/a%g0"])
def test_malformed_escapes_are_400(raw: bytes) -> None:
    with pytest.raises(TargetError) as e:
        parse_target(raw)
    assert e.value.status == 400


TRAVERSAL = [
    b"/../etc/passwd",
    b"/a/../../etc/passwd",
    b"/%2e%2e/etc/passwd",
    b"/%2E%2E%2Fetc%2Fpasswd",
    b"/..%2fetc%2fpasswd",
    b"/..%5c..%5cwindows",
    b"/a\\..\\b",
    b"/%5c%5cserver%5cshare",
    b"/a%00.txt",
    b"/.",
    b"/./hello.txt",
    b"/a/./b",
    b"/" + b"x" * 256,
    b"/.hidden",
    b"/a/.git/config",
    b"/%2egit/HEAD",
    b"http://h/../x",
]


@pytest.mark.parametrize("raw", TRAVERSAL)
def test_traversal_corpus_is_404(raw: bytes) -> None:
    with pytest.raises(TargetError) as e:
        parse_target(raw)
    assert e.value.status == 404


def test_dotfiles_allowed_when_asked_but_never_dot_segments() -> None:
    assert parse_target(b"/.well-known/x", dotfiles=True).segments == (b".well-known", b"x")
    with pytest.raises(TargetError):
        parse_target(b"/../x", dotfiles=True)


def test_absolute_path_in_url_stays_under_root() -> None:
    t = parse_target(b"//etc//passwd")
    assert t.segments == (b"etc", b"passwd")
    assert t.url_path() == b"/etc/passwd"  # never "//etc": a Location of //host is an open redirect


def test_trailing_slash_and_url_path_reencodes() -> None:
    t = parse_target(b"/a%20b/c%3Fd/")
    assert t.segments == (b"a b", b"c?d")
    assert t.slash
    assert t.url_path() == b"/a%20b/c%3Fd/"
    assert percent_decode(quote(b"\xff/?# %")) == b"\xff/?# %"
