"""The exception an ASGI app sees when its client has gone (shared by the HTTP and the WebSocket exchange)."""

from __future__ import annotations


class ClientDisconnected(OSError):
    """send() could not deliver: the client has gone (ASGI spec 2.4 asks for an OSError subclass)."""
