"""Request head → ASGI connection scope, and who the client is behind a trusted proxy (pure, no I/O).

The scope follows asgiref's HTTP and WebSocket connection-scope specs: ``path`` is percent-decoded once and
decoded as UTF-8, ``raw_path`` keeps the bytes as sent, ``headers`` keeps every field in order (names lower-cased,
duplicates kept), and with a ``root_path`` both paths include it (what Starlette ≥ 0.33 and uvicorn expect).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

ASGI = {"version": "3.0", "spec_version": "2.4"}  # 2.4: send() raises OSError once the client is gone
WS_ASGI = {"version": "3.0", "spec_version": "2.4"}

Headers = list[tuple[bytes, bytes]]
Addr = tuple[str, int] | None


class BadTarget(Exception):
    """The request-target cannot be turned into a path (the peer's error: answer 400)."""


def split(target: bytes) -> tuple[bytes, bytes]:
    """(raw_path, query_string) of an origin-, absolute- or asterisk-form request-target (RFC 9112 §3.2)."""
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
    elif target == b"*":
        return b"*", b""  # OPTIONS * : the path is the asterisk itself
    else:
        lower = target[:8].lower()
        if lower.startswith(b"http://"):
            rest = target[7:]
        elif lower.startswith(b"https://"):
            rest = target[8:]
        else:
            raise BadTarget("request-target is neither origin-, absolute- nor asterisk-form")
        cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
        if cut == 0 or b"@" in rest[:cut]:
            raise BadTarget("absolute-form target without a valid authority")
        rest = rest[cut:]
        path, _, query = rest.partition(b"?")
        path = path or b"/"
    if b"#" in target:
        raise BadTarget("fragment in request-target")  # RFC 9112 §3.2: never sent by a client
    return path, query


def decode_path(raw_path: bytes) -> str:
    """Percent-decode once, then UTF-8 (invalid sequences become U+FFFD, as urllib's unquote does)."""
    if b"%" not in raw_path:
        try:
            return raw_path.decode("ascii")
        except UnicodeDecodeError:
            return raw_path.decode("utf-8", "replace")
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Trusted:
    """The proxies whose X-Forwarded-* headers we believe: addresses, networks, or everything ("*")."""

    everyone: bool
    addresses: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, items: tuple[str, ...] | list[str]) -> Trusted:
        """From uvicorn's --forwarded-allow-ips syntax: comma-free items (split by the caller), "*" = all."""
        everyone = False
        addresses: set[str] = set()
        networks = []
        for item in items:
            item = item.strip()
            if not item:
                continue
            if item == "*":
                everyone = True
            elif "/" in item and not item.startswith("unix:"):
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError as exc:
                    raise ValueError(f"--forwarded-allow-ips: not an address or network: {item!r}") from exc
            else:
                try:
                    addresses.add(str(ipaddress.ip_address(item)))
                except ValueError:
                    addresses.add(item)  # a unix socket path or a literal the proxy gives, compared as text
        return cls(everyone, frozenset(addresses), tuple(networks))

    def __contains__(self, host: str) -> bool:
        if self.everyone or host in self.addresses:
            return True
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def forwarded(headers: Headers, client: Addr, scheme: str, trusted: Trusted) -> tuple[Addr, str]:
    """(client, scheme) after X-Forwarded-For/-Proto, believed only when the direct peer is a trusted proxy.

    X-Forwarded-For is read right to left, skipping trusted proxies: the first untrusted address is the client
    (the leftmost entries are whatever the client itself wrote, so they are never believed blindly).
    """
    if client is None or client[0] not in trusted:
        return client, scheme
    xff: list[bytes] = []
    proto = None
    for name, value in headers:
        if name == b"x-forwarded-for":
            xff.append(value)
        elif name == b"x-forwarded-proto":
            proto = value
    if proto is not None:
        p = proto.decode("latin-1").split(",")[-1].strip().lower()
        if p in ("http", "https", "ws", "wss"):
            if scheme in ("ws", "wss"):
                p = "wss" if p in ("https", "wss") else "ws"
            else:
                p = "https" if p in ("https", "wss") else "http"
            scheme = p
    if xff:
        hops = [h.strip() for h in b",".join(xff).decode("latin-1").split(",") if h.strip()]
        for host in reversed(hops):
            if host not in trusted:
                client = (host, 0)
                break
        else:
            if hops:
                client = (hops[0], 0)
    return client, scheme


def _paths(target: bytes, root_path: str) -> tuple[str, bytes, bytes]:
    """(path, raw_path, query_string) of a request-target, both paths under ``root_path``; raises BadTarget.
    Once per request: a plain origin-form target (the common case) skips the general parser's calls."""
    if target[:1] == b"/" and b"%" not in target and b"#" not in target and target.isascii():
        raw_path, _, query = target.partition(b"?")
        path = raw_path.decode("ascii")
    else:
        raw_path, query = split(target)
        path = decode_path(raw_path)
    if root_path:
        return root_path + path, root_path.encode("utf-8") + raw_path, query
    return path, raw_path, query


def http_scope(
    method: bytes,
    target: bytes,
    http_version: str,
    headers: Headers,
    client: Addr,
    server: Addr,
    scheme: str,
    root_path: str,
    state: dict[str, Any] | None,
    extensions: dict[str, Any],
) -> dict[str, Any]:
    """The ``http`` scope for one request; raises BadTarget for a target that names no path."""
    path, raw_path, query = _paths(target, root_path)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": ASGI,
        "http_version": http_version,
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": method.decode("ascii"),
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers,
        "extensions": extensions,
    }
    if state is not None:
        scope["state"] = state.copy()  # shallow copy per request, as the lifespan spec asks
    return scope


def websocket_scope(
    *,
    target: bytes,
    http_version: str,
    headers: Headers,
    client: Addr,
    server: Addr,
    scheme: str,
    root_path: str,
    state: dict[str, Any] | None,
    subprotocols: list[str],
    extensions: dict[str, Any],
) -> dict[str, Any]:
    """The ``websocket`` scope for an upgrade request (scheme "ws"/"wss")."""
    path, raw_path, query = _paths(target, root_path)
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": WS_ASGI,
        "http_version": http_version,
        "scheme": scheme,
        "server": server,
        "client": client,
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers,
        "subprotocols": subprotocols,
        "extensions": extensions,
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope
