"""Checksum algorithms of the wire format: ids, digest sizes and incremental hashers (pure, no I/O).

xxh3-128 is the default because it hashes at memory speed (tens of GB/s); sha256 (~1.2 GB/s here, see
ANCHORS.md) is there for users who want a cryptographic digest; "none" trusts TCP's 16-bit checksum alone.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import xxhash

NONE = 0
XXH3 = 1
SHA256 = 2

# name → wire id; digest sizes are fixed per algorithm (xxh3-128: 16 bytes, sha256: 32 bytes, none: 0).
ALGORITHMS: dict[str, int] = {"none": NONE, "xxh3": XXH3, "sha256": SHA256}
NAMES: dict[int, str] = {v: k for k, v in ALGORITHMS.items()}
DIGEST_SIZE: dict[int, int] = {NONE: 0, XXH3: 16, SHA256: 32}


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _NoHash:
    def update(self, data: bytes | memoryview, /) -> None:
        pass

    def digest(self) -> bytes:
        return b""


def new_hasher(algo: int) -> Hasher:
    """An incremental hasher for wire algorithm id `algo` (ValueError for an unknown id)."""
    if algo == XXH3:
        h: Hasher = xxhash.xxh3_128()
        return h
    if algo == SHA256:
        return hashlib.sha256()
    if algo == NONE:
        return _NoHash()
    raise ValueError(f"unknown checksum algorithm id {algo}")


def prefix_algorithm(algo: int) -> int:
    """The algorithm that verifies a resumed partial's prefix: the session's, or xxh3 when it has none.

    A resume must never trust a prefix blindly, even when the user turned per-file checksums off.
    """
    return XXH3 if algo == NONE else algo


def digest_of(algo: int, data: bytes | memoryview) -> bytes:
    """Digest of one buffer in a single call (the small-file path hashes each file where it was just read)."""
    if algo == XXH3:
        out: bytes = xxhash.xxh3_128_digest(data)
        return out
    if algo == SHA256:
        return hashlib.sha256(data).digest()
    if algo == NONE:
        return b""
    raise ValueError(f"unknown checksum algorithm id {algo}")
