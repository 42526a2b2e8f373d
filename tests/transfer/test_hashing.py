"""Checksum ids and digests of real files: over a mapping (receiver) and through a buffer (sender)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import xxhash

from zcopy import FileChannel
from zcopy.transfer import checksum as ck
from zcopy.transfer import hashing


def test_algorithm_table_matches_the_hashers() -> None:
    for name, algo in ck.ALGORITHMS.items():
        assert ck.NAMES[algo] == name
        h = ck.new_hasher(algo)
        h.update(b"abc")
        assert len(h.digest()) == ck.DIGEST_SIZE[algo]
    with pytest.raises(ValueError):
        ck.new_hasher(99)
    assert ck.prefix_algorithm(ck.NONE) == ck.XXH3 and ck.prefix_algorithm(ck.SHA256) == ck.SHA256


@pytest.mark.parametrize("size", [0, 1, 4095, hashing.BUFFER_SIZE + 17])
def test_mapped_and_buffered_digests_agree_with_reference(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    f = tmp_path / "f"
    f.write_bytes(data)
    with FileChannel.open(f) as ch:
        assert hashing.digest_mapped(ck.XXH3, ch, size) == xxhash.xxh3_128(data).digest()
        assert hashing.digest_read(ck.XXH3, ch, size) == xxhash.xxh3_128(data).digest()
        assert hashing.digest_mapped(ck.SHA256, ch, size) == hashlib.sha256(data).digest()
        assert hashing.digest_read(ck.SHA256, ch, size) == hashlib.sha256(data).digest()
        assert hashing.digest_mapped(ck.NONE, ch, size) == b""


def test_buffered_digest_of_a_file_shorter_than_expected_is_none(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1000)
    with FileChannel.open(f) as ch:
        assert hashing.digest_read(ck.XXH3, ch, 2000) is None
        h = ck.new_hasher(ck.XXH3)
        assert hashing.update_read(h, ch, 500, 2000) == 500
