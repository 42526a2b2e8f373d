"""The open-file cache on real fds: LRU bound, validity interval, and fds closed only after their last user."""

from __future__ import annotations

import os
from pathlib import Path

from zcopy.serve.cache import FileCache, Group, make_group


def group_for(path: Path, variants: bool = False) -> Group:
    fd = os.open(path, os.O_RDONLY)
    found: list[tuple[int, os.stat_result, str] | None] = [(fd, os.fstat(fd), path.name), None, None]
    if variants:
        gz = os.open(path, os.O_RDONLY)
        found[2] = (gz, os.fstat(gz), path.name + ".gz")
    return make_group(found, path.name.encode())


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_entry_fields_and_fixed_head(tmp_path: Path) -> None:
    p = tmp_path / "a.css"
    p.write_bytes(b"body{}")
    g = group_for(p, variants=True)
    base = g.base
    assert base.size == 6 and base.etag.startswith(b'"') and base.content_type.startswith(b"text/css")
    assert b"Content-Length: 6\r\n" in base.fixed and b"Vary: Accept-Encoding\r\n" in base.fixed
    assert g.gz is not None and b"Content-Encoding: gzip" in g.gz.fixed


def test_lru_eviction_closes_unused_fds(tmp_path: Path) -> None:
    cache = FileCache(max_entries=2, valid=10)
    fds = []
    for i in range(3):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x")
        g = group_for(p)
        fds.append(g.base.fd)
        cache.put(b"/f%d" % i, g, now=0.0)
    assert len(cache) == 2 and not is_open(fds[0]) and is_open(fds[1]) and is_open(fds[2])
    assert cache.get(b"/f0", 1.0) is None and cache.get(b"/f2", 1.0) is not None
    cache.clear()
    assert not is_open(fds[1]) and not is_open(fds[2])


def test_in_use_entry_survives_eviction_until_released(tmp_path: Path) -> None:
    cache = FileCache(max_entries=1, valid=10)
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    ga = group_for(tmp_path / "a")
    cache.put(b"/a", ga, 0.0)
    entry = ga.base.acquire()
    cache.put(b"/b", group_for(tmp_path / "b"), 0.0)
    assert is_open(entry.fd) and os.pread(entry.fd, 1, 0) == b"a"  # a response still sending from it
    fd = entry.fd
    entry.release()
    assert not is_open(fd)


def test_validity_interval(tmp_path: Path) -> None:
    cache = FileCache(max_entries=4, valid=1.0)
    (tmp_path / "a").write_bytes(b"a")
    cache.put(b"/a", group_for(tmp_path / "a"), now=100.0)
    assert cache.get(b"/a", 100.9) is not None
    assert cache.get(b"/a", 101.5) is None  # stale: the caller resolves again and put() replaces it
    assert cache.hits == 1 and cache.misses == 1
    cache.clear()


def test_disabled_cache_stores_nothing(tmp_path: Path) -> None:
    cache = FileCache(max_entries=0)
    (tmp_path / "a").write_bytes(b"a")
    g = group_for(tmp_path / "a")
    cache.put(b"/a", g, 0.0)
    assert len(cache) == 0
    g.retire()
