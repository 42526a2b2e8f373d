"""serve/transport.py: the residency probe and the bounded disk pool (end to end: test_cold.py)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from zcopy.serve.transport import DiskPool, resident


def test_resident_says_no_for_an_evicted_file_and_yes_once_read(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(1 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert not resident(fd, 0, 1 << 20)
        assert not resident(fd, 4096 * 10, 1)
        os.pread(fd, 1 << 20, 0)  # now in the page cache
        assert resident(fd, 0, 1 << 20) and resident(fd, 12345, 1)
        assert resident(fd, 2 << 20, 10)  # past the end: sendfile will say how short the file is
    finally:
        os.close(fd)


def test_pool_runs_at_most_size_jobs_and_queues_the_rest_in_order() -> None:
    gate = threading.Event()
    started: list[int] = []

    def job(i: int) -> int:
        started.append(i)
        gate.wait(10)
        return i * 10

    async def main() -> None:
        pool = DiskPool(2)
        futs = [pool.run(job, i) for i in range(5)]
        await asyncio.sleep(0.05)
        assert (pool.busy, pool.queued, pool.threads) == (2, 3, 2)
        futs[3].cancel()  # its connection went away while it waited: it never runs
        gate.set()
        done = await asyncio.gather(*(f for i, f in enumerate(futs) if i != 3))
        assert done == [0, 10, 20, 40]
        assert sorted(started) == [0, 1, 2, 4] and started.index(2) < started.index(4)
        assert (pool.busy, pool.queued, pool.threads) == (0, 0, 2)
        pool.close()

    asyncio.run(main())


def test_pool_hands_exceptions_to_the_loop_and_rejects_a_size_below_one() -> None:
    def boom() -> None:
        raise OSError(32, "Broken pipe")

    async def main() -> None:
        pool = DiskPool(1)
        with pytest.raises(OSError, match="Broken pipe"):
            await pool.run(boom)
        assert pool.busy == 0
        pool.close()

    asyncio.run(main())
    with pytest.raises(ValueError, match="at least 1"):
        DiskPool(0)


def test_resident_exact_looks_at_every_page_of_a_big_chunk(tmp_path: Path) -> None:
    path = tmp_path / "g.bin"
    path.write_bytes(os.urandom(1 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no read-ahead: exactly the pages read get cached
        os.pread(fd, 4096, 0)
        os.pread(fd, 4096, (1 << 20) - 4096)  # first and last page cached, the middle not
        assert resident(fd, 0, 1 << 20)  # the cheap probe looks at the ends only
        assert not resident(fd, 0, 1 << 20, exact=True)  # once a file is being read from the disk: every page
        os.pread(fd, 1 << 20, 0)
        assert resident(fd, 0, 1 << 20, exact=True)
    finally:
        os.close(fd)
