"""What a response body is made of, as plain values: byte strings and file slices (no I/O here).

The HTTP rule modules (serve/handler.py, serve/asgi/cycle.py, serve/h1.py) build lists of ``Part``; the senders
(zcopy.aio's Outbox, serve/transport.py) move them. Keeping the values apart lets the rules import no I/O module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class FileSlice:
    """``count`` bytes of file descriptor ``fd`` from ``offset``, to be sent by sendfile; ``name`` for errors."""

    fd: int
    offset: int
    count: int
    name: str = "file"


Part = bytes | FileSlice
