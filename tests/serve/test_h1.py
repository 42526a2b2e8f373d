"""serve/h1.py: the request-head rules both responders share, driven with real bytes through httptools."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from zcopy.errors import TruncatedFileError
from zcopy.parts import FileSlice
from zcopy.serve.config import Limits
from zcopy.serve.h1 import RECV_SIZE, UPGRADE, H1Reader
from zcopy.serve.transport import TLS_CHUNK, TlsCopy


def limits(*, header_timeout: float = 10.0, max_header_bytes: int = 8192, max_url_bytes: int = 1024) -> Limits:
    return Limits(header_timeout, 5.0, 5.0, max_header_bytes, max_url_bytes, 1 << 20)


class Reader(H1Reader):
    """A responder that keeps every header and each complete request's target."""

    def __init__(self, lim: Limits | None = None) -> None:
        super().__init__(lim or limits())
        self.headers: list[tuple[bytes, bytes]] = []
        self.done: list[tuple[bytes, bool]] = []
        self.begins = 0

    def begin(self) -> None:
        self.begins += 1
        self.headers = []

    def header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.in_request = False
        http10 = self.parser.get_http_version() == "1.0"
        self.done.append((self.target(), self.host_ok(http10)))


def test_headers_lower_cased_in_order_with_duplicates() -> None:
    r = Reader()
    req = b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nAccept: */*\r\n\r\n"
    assert r.parse(req) == 0
    assert r.headers == [(b"host", b"x"), (b"x-a", b"1"), (b"x-a", b"2"), (b"accept", b"*/*")]
    assert r.done == [(b"/a?b", True)]
    assert not r.in_request and not r.in_head


def test_target_split_across_reads_and_per_request_reset() -> None:
    r = Reader()
    assert r.parse(b"GET /long") == 0
    assert r.in_request and r.in_head
    assert r.parse(b"/path HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: y\r\n\r\n") == 0
    assert r.done == [(b"/long/path", True), (b"/two", True)]
    assert r.begins == 2 and r.headers == [(b"host", b"y")]


@pytest.mark.parametrize(
    ("head", "ok"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", False),  # 1.1 without Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", False),  # several
        (b"GET / HTTP/1.0\r\n\r\n", True),  # 1.0 may omit it
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", False),
    ],
)
def test_host_rule(head: bytes, ok: bool) -> None:
    r = Reader()
    assert r.parse(head) == 0
    assert r.done[0][1] is ok


def test_url_too_long_is_414() -> None:
    r = Reader(limits(max_url_bytes=16))
    assert r.parse(b"GET /" + b"a" * 40 + b" HTTP/1.1\r\nHost: x\r\n\r\n") == 414


def test_header_section_too_big_is_431() -> None:
    r = Reader(limits(max_header_bytes=64))
    assert r.parse(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 100 + b"\r\n\r\n") == 431


def test_a_header_line_that_never_ends_is_bounded() -> None:
    # httptools buffers an unfinished line without calling back: parse() counts the bytes itself.
    r = Reader(limits(max_header_bytes=64))
    assert r.parse(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ") == 0
    chunk = b"v" * 4096
    statuses = {r.parse(chunk) for _ in range((64 + RECV_SIZE) // len(chunk) + 2)}
    assert 431 in statuses


def test_garbage_is_400() -> None:
    assert Reader().parse(b"\x00\x01 not http\r\n\r\n") == 400


def test_upgrade_reports_where_the_new_protocol_starts() -> None:
    r = Reader()
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert r.parse(head + b"\x81\x00") == UPGRADE
    assert (head + b"\x81\x00")[r.upgrade_at :] == b"\x81\x00"


def test_slowloris_deadline_starts_at_the_first_byte_of_a_request() -> None:
    r = Reader(limits(header_timeout=3.0))
    r.deadline = float("inf")  # e.g. an idle keep-alive connection whose deadline the responder moved
    before = time.monotonic()
    r.parse(b"GE")
    assert before + 3.0 <= r.deadline <= time.monotonic() + 3.0
    r.deadline = 0.0
    r.parse(b"T / HTTP/1.1\r\n")  # the same head: its deadline is not renewed by more bytes
    assert r.deadline == 0.0


class Transport:
    """What TlsCopy needs of an SSL transport: write() and the size of its write buffer (a real one is covered by
    tests/serve/test_tls.py and test_tls_memory.py). `drain()` stands for the socket taking what was buffered."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def drain(self, left: int = 0) -> None:
        self.buffered = min(self.buffered, left)


def test_tls_copy_writes_the_slice_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(TLS_CHUNK * 2 + 1000)
    path = tmp_path / "f"
    path.write_bytes(data)
    t, waits = Transport(), []

    async def wait() -> None:  # writable again: the socket took all but a few bytes, once in a while
        waits.append(1)
        t.drain(left=1000 if len(waits) % 3 == 0 else 0)

    copy = TlsCopy()
    fd = os.open(path, os.O_RDONLY)
    try:
        asyncio.run(copy.write(t, FileSlice(fd, 500, len(data) - 600, "f"), wait))  # type: ignore[arg-type]
    finally:
        os.close(fd)
    assert b"".join(t.chunks) == data[500:-100]
    assert copy.moved == len(data) - 600 and len(waits) == len(t.chunks)
    # One TLS record's worth at a time, the transport's whole write limit (issue #20 F6: no reading far ahead).
    assert all(len(c) == TLS_CHUNK for c in t.chunks[:-1]) and 0 < len(t.chunks[-1]) <= TLS_CHUNK


def test_tls_copy_of_a_truncated_file_counts_what_moved(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    t = Transport()

    async def wait() -> None:
        pass

    copy = TlsCopy()
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(TruncatedFileError) as info:
            asyncio.run(copy.write(t, FileSlice(fd, 0, 5000, "f"), wait))  # type: ignore[arg-type]
    finally:
        os.close(fd)
    assert copy.moved == info.value.bytes_moved == 1000
    assert info.value.position == 1000 and info.value.expected_end == 5000
