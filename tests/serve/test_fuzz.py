"""Fuzzing the request path (hypothesis): pure parsers never raise unexpectedly; the server never hangs or 500s."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zcopy.serve import conditional, ranges
from zcopy.serve.target import TargetError, parse_target

from .conftest import Running, read_until_close

Serve = Callable[..., Running]

FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

PIECES = [
    b"GET",
    b"HEAD",
    b"POST",
    b" ",
    b"/",
    b"..",
    b"%2e",
    b"%2f",
    b"%",
    b"%00",
    b"?",
    b"#",
    b"\\",
    b"hello.txt",
    b"docs",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"\r\n",
    b"\n",
    b"Host: x",
    b"Range: bytes=",
    b"0-",
    b"-1",
    b",",
    b"If-None-Match: ",
    b'"x"',
    b"*",
    b"If-Range: ",
    b"Connection: close",
    b"Transfer-Encoding: chunked",
    b"Content-Length: 3",
    b"0\r\n\r\n",
    b":",
    b"\x00",
    b"\xff",
    b"http://h",
    b"If-Modified-Since: ",
    b"Sun, 06 Nov 1994 08:49:37 GMT",
    b"Accept-Encoding: gzip, br;q=0",
]
pieces = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=8)), max_size=40).map(b"".join)


@FAST
@given(st.one_of(pieces, st.binary(max_size=200)))
def test_parse_target_only_raises_target_error(raw: bytes) -> None:
    try:
        t = parse_target(raw)
    except TargetError as exc:
        assert exc.status in (400, 404)
    else:
        assert all(s and s not in (b".", b"..") and b"/" not in s and b"\\" not in s for s in t.segments)


@FAST
@given(st.one_of(pieces, st.binary(max_size=200)), st.integers(min_value=0, max_value=1 << 40))
def test_ranges_never_raise_and_stay_inside(value: bytes, size: int) -> None:
    spans = ranges.ranges_for(value, size)
    if spans:
        assert all(0 <= s < e <= size for s, e in spans)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))  # sorted, disjoint, not touching


@FAST
@given(st.binary(max_size=80), st.binary(max_size=80))
def test_conditionals_never_raise(a: bytes, b: bytes) -> None:
    etag = conditional.make_etag(1, 2, 3)
    conditional.precondition(
        etag=etag, mtime=5, if_match=a, if_unmodified_since=b, if_none_match=b, if_modified_since=a
    )
    conditional.if_range_holds(a, etag=etag, mtime=5)


def test_server_survives_fuzzed_requests(serve: Serve) -> None:
    r = serve(header_timeout=1.0)
    errors: list[str] = []
    r.server.log_exception = lambda level, message: errors.append(message)  # type: ignore[method-assign]
    # What escapes a handler or a protocol callback (the connection is then dropped: a reset on our side) lands
    # in the loop's exception handler: it counts as a failure too.
    r.loop.call_soon_threadsafe(r.loop.set_exception_handler, lambda loop, ctx: errors.append(str(ctx)))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(pieces, st.binary(max_size=64)), min_size=1, max_size=4))
    def one(chunks: list[bytes]) -> None:
        s = socket.create_connection(r.addr, timeout=3)
        try:
            for c in chunks:
                s.sendall(c)
            s.shutdown(socket.SHUT_WR)  # nothing more: the server must answer what it got, then close
            out = b""
            while chunk := s.recv(65536):  # raises TimeoutError (test failure) if the server hangs
                out += chunk
        except (ConnectionResetError, BrokenPipeError):
            out = b""  # the server may cut garbage short; whether it stayed healthy is checked below
        finally:
            s.close()
        assert b"HTTP/1.1 500" not in out
        # After each batch: the server is alive and answers a valid request, and no handler raised.
        with socket.create_connection(r.addr, timeout=3) as probe:
            probe.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_until_close(probe, 10.0).startswith(b"HTTP/1.1 200")
        assert not errors, (chunks, errors)

    one()


def test_any_segmentation_gives_the_same_answers(serve: Serve) -> None:
    """The same pipelined requests split at arbitrary points: byte-identical responses (Date aside)."""
    import time

    r = serve()
    stream = (
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-4\r\n\r\n"
        b"HEAD /docs/ HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /nope HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n"
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )

    def exchange(cuts: list[int]) -> bytes:
        s = socket.create_connection(r.addr, timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        last = 0
        for c in [*sorted(set(cuts)), len(stream)]:
            s.sendall(stream[last:c])
            last = c
            time.sleep(0.002)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        s.close()
        return b"\r\n".join(line for line in out.split(b"\r\n") if not line.startswith(b"Date: "))

    whole = exchange([])
    assert whole.count(b"HTTP/1.1 ") == 5

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.integers(min_value=1, max_value=len(stream) - 1), max_size=6))
    def one(cuts: list[int]) -> None:
        assert exchange(cuts) == whole

    one()
