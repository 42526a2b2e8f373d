"""Request-target → path segments under the root: which URL paths may name a file (pure, no I/O).

Percent-escapes are decoded exactly once, and only then split on "/", so `%2f` can never smuggle a separator
past a check. Anything that could step outside the root or name something we never serve is refused with
404 (same answer as "missing", so existence does not leak); a target that is not origin- or absolute-form is 400.
"""

from __future__ import annotations

from dataclasses import dataclass

# NAME_MAX on Linux ext4/xfs/btrfs: 255 bytes per path component; longer cannot exist, so answer 404 early.
NAME_MAX = 255


class TargetError(Exception):
    """The request-target cannot be served; ``status`` is 400 (malformed) or 404 (refused or cannot exist)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")


@dataclass(frozen=True, slots=True)
class Target:
    """A decoded request path: ``segments`` relative to the root, ``slash`` when the path ended in "/"."""

    segments: tuple[bytes, ...]
    slash: bool
    query: bytes

    def url_path(self) -> bytes:
        """The canonical, re-encoded path (single leading "/", no empty segments): safe for a Location header."""
        return b"/" + b"/".join(quote(s) for s in self.segments) + (b"/" if self.slash and self.segments else b"")


def split_target(raw: bytes) -> tuple[bytes, bytes]:
    """Split a request-target into (path, query); accepts origin-form and absolute-form (RFC 9112 §3.2)."""
    if raw[:1] != b"/":
        lower = raw[:8].lower()
        if lower.startswith(b"http://"):
            rest = raw[7:]
        elif lower.startswith(b"https://"):
            rest = raw[8:]
        else:
            # asterisk-form (OPTIONS *) and authority-form (CONNECT) name no file; RFC 9112 §3.2.3/3.2.4.
            raise TargetError(400, "request-target is neither origin-form nor absolute-form")
        slash = rest.find(b"/")
        query_at = rest.find(b"?")
        if slash < 0 or (0 <= query_at < slash):
            authority, rest = (rest, b"/") if query_at < 0 else (rest[:query_at], b"/" + rest[query_at:])
        else:
            authority, rest = rest[:slash], rest[slash:]
        if not authority or b"@" in authority:
            # RFC 9110 §4.2.1: an empty host is invalid; userinfo is deprecated and never names our file.
            raise TargetError(400, "absolute-form target without a valid authority")
        raw = rest
    if b"#" in raw:
        raise TargetError(400, "fragment in request-target")  # RFC 9112 §3.2: fragments are never sent
    path, _, query = raw.partition(b"?")
    return path, query


_HEX = b"0123456789abcdefABCDEF"


def percent_decode(path: bytes) -> bytes:
    """Decode %XX once; a '%' not followed by two hex digits is malformed (400), never passed through."""
    if b"%" not in path:
        return path
    out = bytearray()
    i = 0
    n = len(path)
    while i < n:
        c = path[i]
        if c == 0x25:  # '%'
            pair = path[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise TargetError(400, "malformed percent-escape")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)


def parse_target(raw: bytes, *, dotfiles: bool = False) -> Target:
    """Turn a raw request-target into a Target, or raise TargetError (400 malformed, 404 refused)."""
    path, query = split_target(raw)
    decoded = percent_decode(path)
    if b"\x00" in decoded:
        raise TargetError(404, "NUL in path")
    if b"\\" in decoded:
        # A backslash is a separator on Windows (UNC \\host\share, ..\..): never meaningful in our names.
        raise TargetError(404, "backslash in path")
    parts = decoded.split(b"/")
    segments = []
    for seg in parts:
        if not seg:
            continue  # "//" collapses: an empty segment names nothing, and must not become "//host" later
        if seg in (b".", b".."):
            # Clients remove dot-segments before sending (RFC 3986 §5.2.4); any left (or hidden as %2e) are hostile.
            raise TargetError(404, "dot-segment in path")
        if seg[:1] == b"." and not dotfiles:
            raise TargetError(404, "dotfile")
        if len(seg) > NAME_MAX:
            raise TargetError(404, "path component longer than NAME_MAX")
        segments.append(seg)
    return Target(tuple(segments), decoded.endswith(b"/"), query)


# RFC 3986 §2.3 unreserved plus sub-delims and ':' '@' allowed in a path segment (pchar); everything else escaped.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@")


def quote(segment: bytes) -> bytes:
    """Percent-encode one path segment (bytes in, bytes out), so it round-trips through percent_decode."""
    if all(b in _SAFE for b in segment):
        return segment
    return b"".join(bytes((b,)) if b in _SAFE else b"%%%02X" % b for b in segment)
