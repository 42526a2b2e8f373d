"""The HTTP/1.1 request-head rules both responders share (static files in ``conn.py``, ASGI in ``asgi/http.py``).

``H1Reader`` holds the httptools parser and its head callbacks: the URL and header-section size limits (414, 431),
the Host count (RFC 9112 §3.2), and the slowloris deadline (a started head must be complete within
``header_timeout``). What a responder does with a header (keep a few, or all for the ASGI scope) is its
``header()``; what it does with a parsed request, a body or a malformed request is its own. No socket I/O here:
the connection feeds the bytes it read to ``parse()``.
"""

from __future__ import annotations

import time

import httptools

from zcopy.serve.config import Limits

# One recv per readable event: 64 KiB holds dozens of pipelined requests, and bounds what an unfinished
# header section can make us buffer beyond --max-header-bytes (see parse()).
RECV_SIZE = 1 << 16
# After "Connection: close" we stop writing, then read and discard what the peer still sends for this long,
# so our close does not turn into an RST that destroys the response in flight (nginx lingering_close).
LINGER_SECONDS = 2.0
INF = float("inf")
UPGRADE = -1  # parse(): httptools stopped at a protocol upgrade


class TooLarge(Exception):
    """Raised from a parser callback to stop parsing (httptools wraps it); the status is in ``H1Reader.error``."""


class H1Reader:
    """httptools head callbacks with the limits; subclasses add ``header()`` and the body/message callbacks."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self.in_request = False  # a request has begun and is not complete
        self.in_head = False  # ... and its header section is not complete
        self.head_bytes = 0
        self.deadline = time.monotonic() + limits.header_timeout
        self.error = 0  # the status a callback stopped parsing with (TooLarge)
        self.upgrade_at = 0  # after parse() returned UPGRADE: where the other protocol's bytes start
        self._url: list[bytes] = []
        self._hosts = 0
        self._te = False

    # -- httptools callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_request = True
        self.in_head = True
        self.head_bytes = 0
        self._url = []
        self._hosts = 0
        self._te = False
        self.begin()

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self.head_bytes += len(url)
        if self.head_bytes > self.limits.max_url_bytes:
            self.error = 414
            raise TooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self.head_bytes > self.limits.max_header_bytes:
            self.error = 431
            raise TooLarge
        name = name.lower()
        if name == b"host":
            self._hosts += 1
        elif name == b"transfer-encoding":
            self._te = True
        self.header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0  # from here on: body bytes
        self.head_complete()

    # -- for the responders ---------------------------------------------------------------------------
    def begin(self) -> None:
        """A new request head starts: reset the responder's per-request state."""

    def header(self, name: bytes, value: bytes) -> None:
        """One header field, its name lower-cased (called in order, duplicates included)."""
        raise NotImplementedError

    def head_complete(self) -> None:
        """The header section is complete (``in_head`` is already False); may raise TooLarge (status in error)."""

    def host_ok(self, http10: bool) -> bool:
        """RFC 9112 §3.2: a 1.1 request has exactly one Host, and no request has several (else 400)."""
        hosts = self._hosts
        return hosts == 1 or (http10 and hosts == 0)

    def keep_alive(self, http10: bool) -> bool:
        """May the connection carry another request after this one? httptools' answer, except that an HTTP/1.0
        request with Transfer-Encoding has faulty framing: answer it, then close (RFC 9112 §6.1)."""
        return bool(self.parser.should_keep_alive()) and not (http10 and self._te)

    def target(self) -> bytes:
        return b"".join(self._url)

    def parse(self, data: bytes) -> int:
        """Feed ``data`` to the parser. Returns 0, UPGRADE (the rest of ``data`` from ``upgrade_at`` belongs to
        the new protocol), or the status that answers a malformed request (400, 413, 414, 431)."""
        if not self.in_request:
            # First byte of a request: the whole head must arrive within header_timeout (slowloris).
            self.deadline = time.monotonic() + self.limits.header_timeout
        counted = self.in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgrade_at = int(exc.args[0]) if exc.args else len(data)
            return UPGRADE
        except httptools.HttpParserError:
            return self.error or 400
        if counted and self.in_head:
            # Bytes of one unfinished header section (upper bound): caps what httptools buffers for a header
            # line that never ends, at max_header_bytes + one RECV_SIZE.
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_bytes + RECV_SIZE:
                return 431
        return 0
