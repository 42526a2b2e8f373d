"""Response header fields checked one by one before they reach the wire (pure).

A name must be an RFC 9110 §5.6.2 token; a value may hold only field-vchar (VCHAR and obs-text), SP and HTAB
(§5.5): no CR, LF, NUL or other control byte, so a value can never end its line early and start another one
(response splitting). Each field is checked on its own: a check over the joined block would take
``"x\\r\\nSet-Cookie: a=b"`` for two well-formed lines. Used for the app's response heads, the WebSocket
handshake's extra headers and any header a user configures.
"""

from __future__ import annotations

import re

NAME_OK = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
VALUE_OK = re.compile(rb"[\t\x20-\x7e\x80-\xff]*").fullmatch


class BadField(ValueError):
    """A header name or value that must not be written (``name`` is the offending field's name, as given)."""

    def __init__(self, name: object, message: str) -> None:
        super().__init__(message)
        self.name = name


def check(name: object, value: object) -> None:
    """Raise BadField unless ``name``/``value`` are bytes forming a field that is safe to serialise."""
    if not isinstance(name, (bytes, bytearray)) or not isinstance(value, (bytes, bytearray)):
        raise BadField(name, f"header {name!r}: name and value must be bytes")
    if not NAME_OK(name):
        raise BadField(name, f"invalid header name {bytes(name)!r}")
    if not VALUE_OK(value):
        raise BadField(name, f"invalid value for header {bytes(name)!r} (control bytes such as CR, LF or NUL)")


def check_all(headers: object) -> list[tuple[bytes, bytes]]:
    """Every pair of an ASGI ``headers`` iterable checked; the pairs as bytes. BadField on the first bad one."""
    out: list[tuple[bytes, bytes]] = []
    try:
        pairs = list(headers or ())  # type: ignore[call-overload]
    except TypeError:
        raise BadField(None, f"headers must be an iterable of [name, value] pairs: {headers!r}") from None
    for pair in pairs:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise BadField(None, f"header {pair!r} is not a [name, value] pair") from None
        check(name, value)
        out.append((bytes(name), bytes(value)))
    return out
