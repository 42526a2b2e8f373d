"""Nothing outside the root is ever served, over real HTTP; refusals look exactly like missing files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Running, read_until_close

Serve = Callable[..., Running]

CORPUS = [
    b"/../outside.txt",
    b"/%2e%2e/outside.txt",
    b"/%2E%2E%2Foutside.txt",
    b"/..%2foutside.txt",
    b"/docs/../../outside.txt",
    b"/docs/%2e%2e/%2e%2e/outside.txt",
    b"/%252e%252e/outside.txt",
    b"/..%5coutside.txt",
    b"/..\\outside.txt",
    b"/%5c%5clocalhost%5cc$%5coutside.txt",
    b"/outside.txt%00.html",
    b"/%00",
    b"//../outside.txt",
    b"/./../outside.txt",
    b"/.%2e/outside.txt",
    b"/" + b"a/" * 3000,
    b"/" + b"x" * 300,
    b"/%c0%ae%c0%ae/outside.txt",
    b"/..;/outside.txt",
    b"http://h/../outside.txt",
    b"/docs/..",
    b"/.secret",
    b"/%2esecret",
    b"/docs/.%2e/.secret",
    b"/link_out",
    b"/link_out_abs",
    b"/dirlink_out/outside.txt",
    b"/fifo",
]


@pytest.fixture
def hostile_site(site: Path) -> Path:
    (site.parent / "outside.txt").write_bytes(b"SECRET")
    os.symlink("../outside.txt", site / "link_out")
    os.symlink(str(site.parent / "outside.txt"), site / "link_out_abs")
    os.symlink("..", site / "dirlink_out")
    os.symlink("hello.txt", site / "link_in")
    os.mkfifo(site / "fifo")
    return site


def fetch(r: Running, target: bytes) -> bytes:
    s = r.connect()
    s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = read_until_close(s)
    s.close()
    return out


@pytest.mark.parametrize("target", CORPUS, ids=[c[:40].decode("latin-1") for c in CORPUS])
def test_traversal_corpus(serve: Serve, hostile_site: Path, target: bytes) -> None:
    out = fetch(serve(), target)
    assert b"SECRET" not in out and b"hidden" not in out
    assert out.startswith(b"HTTP/1.1 404 "), out[:100]  # every refusal is the same 404 (docs/serve.md, Security)


def test_missing_and_forbidden_look_the_same(serve: Serve, hostile_site: Path) -> None:
    r = serve()

    def strip(resp: bytes) -> bytes:
        return b"\r\n".join(line for line in resp.split(b"\r\n") if not line.startswith(b"Date:"))

    missing = strip(fetch(r, b"/no-such-file"))
    assert missing.startswith(b"HTTP/1.1 404")
    for target in (b"/link_out", b"/.secret", b"/fifo", b"/%2e%2e/outside.txt", b"/dirlink_out/outside.txt"):
        assert strip(fetch(r, target)) == missing


def test_symlink_inside_is_followed_and_policy_switch(serve: Serve, hostile_site: Path) -> None:
    assert fetch(serve(), b"/link_in").endswith(b"hello world\n")
    assert fetch(serve(follow_symlinks=False), b"/link_in").startswith(b"HTTP/1.1 404")


def test_file_replaced_by_symlink_after_caching_is_not_followed_out(serve: Serve, hostile_site: Path) -> None:
    """Swap a served file for a link to outside: once the cache revalidates, the answer is 404, never the secret."""
    r = serve(cache_valid=0.0)
    assert fetch(r, b"/hello.txt").endswith(b"hello world\n")
    os.unlink(hostile_site / "hello.txt")
    os.symlink(hostile_site.parent / "outside.txt", hostile_site / "hello.txt")
    out = fetch(r, b"/hello.txt")
    assert out.startswith(b"HTTP/1.1 404") and b"SECRET" not in out


def test_redirect_location_is_not_protocol_relative(serve: Serve, site: Path) -> None:
    (site / "evil.com").mkdir()
    out = fetch(serve(), b"//evil.com")
    assert b"Location: /evil.com/\r\n" in out
