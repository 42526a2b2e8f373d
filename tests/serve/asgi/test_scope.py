"""scope.py (pure): target forms, path decoding, root_path, trusted proxies."""

from __future__ import annotations

import pytest

from zcopy.serve.asgi.scope import BadTarget, Trusted, decode_path, forwarded, http_scope, split


def test_split_target_forms() -> None:
    assert split(b"/a/b?x=1&y") == (b"/a/b", b"x=1&y")
    assert split(b"/") == (b"/", b"")
    assert split(b"http://h.test/p?q") == (b"/p", b"q")
    assert split(b"HTTPS://h.test") == (b"/", b"")
    assert split(b"http://h.test?q=1") == (b"/", b"q=1")
    assert split(b"*") == (b"*", b"")
    for bad in (b"h.test:80", b"http:///p", b"http://u@h/p", b"/a#frag", b"ftp://h/p"):
        with pytest.raises(BadTarget):
            split(bad)


def test_decode_path_once_utf8() -> None:
    assert decode_path(b"/caf%C3%A9") == "/café"
    assert decode_path(b"/a%2Fb") == "/a/b"  # decoded once: the slash is data now, raw_path keeps %2F
    assert decode_path(b"/%252F") == "/%2F"  # never twice
    assert decode_path(b"/bad%FF") == "/bad\ufffd"
    assert decode_path(b"/100%") == "/100%"  # a stray % is left alone, as urllib does


def test_http_scope_with_root_path_and_state() -> None:
    state = {"db": "x"}
    sc = http_scope(
        method=b"PATCH", target=b"/it%20em?k=v", http_version="1.1", headers=[(b"host", b"h")],
        client=("1.2.3.4", 5), server=("0.0.0.0", 80), scheme="http", root_path="/api", state=state,
        extensions={},
    )  # fmt: skip
    assert sc["path"] == "/api/it em" and sc["raw_path"] == b"/api/it%20em" and sc["root_path"] == "/api"
    assert sc["method"] == "PATCH" and sc["query_string"] == b"k=v"
    assert sc["state"] == state and sc["state"] is not state  # a shallow copy per request


def test_trusted_parsing_and_membership() -> None:
    t = Trusted.parse(["127.0.0.1", "10.0.0.0/8", "::1", "unix:/run/x"])
    assert "127.0.0.1" in t and "10.200.3.4" in t and "::1" in t and "unix:/run/x" in t
    assert "11.0.0.1" not in t and "not-an-ip" not in t
    assert "8.8.8.8" in Trusted.parse(["*"])
    with pytest.raises(ValueError):
        Trusted.parse(["10.0.0.0/99"])


def test_forwarded_only_from_trusted_peers() -> None:
    t = Trusted.parse(["127.0.0.1", "10.0.0.0/8"])
    h = [(b"x-forwarded-for", b"6.6.6.6, 1.2.3.4, 10.0.0.9"), (b"x-forwarded-proto", b"https")]
    assert forwarded(h, ("127.0.0.1", 9), "http", t) == (("1.2.3.4", 0), "https")
    assert forwarded(h, ("8.8.8.8", 9), "http", t) == (("8.8.8.8", 9), "http")  # untrusted peer: ignored
    assert forwarded([(b"x-forwarded-proto", b"https")], ("127.0.0.1", 9), "ws", t) == (("127.0.0.1", 9), "wss")
    assert forwarded([(b"x-forwarded-proto", b"gopher")], ("127.0.0.1", 9), "http", t)[1] == "http"
    # Every hop trusted: the leftmost is the best we know.
    assert forwarded([(b"x-forwarded-for", b"10.1.1.1, 10.2.2.2")], ("127.0.0.1", 1), "http", t)[0] == ("10.1.1.1", 0)
    assert forwarded(h, None, "http", t) == (None, "http")  # unix socket peer with no trust entry
