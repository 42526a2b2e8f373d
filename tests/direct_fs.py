"""Where the direct-I/O tests can run: a directory on a disk file system (O_DIRECT with real DMA), a tmpfs (the
page-cache file system the route refuses), a ramfs (which refuses O_DIRECT itself, EINVAL). Helpers, no tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from zcopy.aligned import PAGE_CACHE_FILESYSTEMS, dio_alignment, fs_type

REPO = Path(__file__).resolve().parent.parent


def _kind(path: Path) -> str | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return fs_type(fd)
    finally:
        os.close(fd)


def dio_offset(path: Path) -> int:
    """The file offset alignment O_DIRECT needs for this file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return dio_alignment(fd).offset
    finally:
        os.close(fd)


@contextlib.contextmanager
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path when it is on a disk file system, else a temp dir inside the repository (which is on a disk)."""
    if _kind(tmp_path) not in PAGE_CACHE_FILESYSTEMS:
        yield tmp_path
        return
    if _kind(REPO) in PAGE_CACHE_FILESYSTEMS:
        pytest.skip("neither the temp dir nor the repository is on a disk file system (O_DIRECT has no DMA here)")
    d = Path(tempfile.mkdtemp(prefix=".direct-test-", dir=REPO))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def tmpfs_dir() -> Iterator[Path]:
    """A fresh directory on a tmpfs: /dev/shm, else a tmpfs mounted for the test (root only), else skip."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and _kind(shm) == "tmpfs":
        d = Path(tempfile.mkdtemp(prefix="zcopy-direct-", dir=shm))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return
    with _mounted("tmpfs", "size=16m") as d:
        yield d


@contextlib.contextmanager
def _mount(args: list[str], at: Path, what: str) -> Iterator[None]:
    """`mount ARGS AT` for the block, then a lazy unmount; skips the test ("cannot WHAT here: why") when mount fails."""
    r = subprocess.run(["mount", *args, str(at)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot {what} here: {r.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(at)], capture_output=True)


@contextlib.contextmanager
def _mounted(fstype: str, options: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=f"zcopy-{fstype}-"))
    try:
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip(f"mounting a {fstype} needs root")
        with _mount(["-t", fstype, "-o", options, "none"], d, f"mount a {fstype}"):
            yield d
    finally:
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.contextmanager
def ramfs_dir() -> Iterator[Path]:
    """A ramfs mounted for the test: a file system that answers O_DIRECT with EINVAL (root only, else skip)."""
    with _mounted("ramfs", "size=16m") as d:
        yield d


@contextlib.contextmanager
def small_ext4(size_mib: int = 8) -> Iterator[Path]:
    """A loop-mounted ext4 image of size_mib MiB (root, mkfs.ext4 and a loop device needed, else skip)."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("a loop-mounted ext4 needs root and mkfs.ext4")
    work = Path(tempfile.mkdtemp(prefix="zcopy-ext4-"))
    image, mnt = work / "fs.img", work / "mnt"
    mnt.mkdir()
    try:
        with open(image, "wb") as f:
            f.truncate(size_mib << 20)
        r = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {r.stderr.strip()}")
        with _mount(["-o", "loop", str(image)], mnt, "loop-mount an ext4 image"):
            yield mnt
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_uncached(path: Path, size: int) -> bytes:
    """A file of `size` bytes (a multiple of 4096) written by O_DIRECT, so none of it is in the page cache: a cold
    source without relying on eviction."""
    assert size % 4096 == 0
    from zcopy import FileChannel, aligned_buffer

    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    buf = aligned_buffer(min(size, 8 << 20))
    with FileChannel.open(path, "w", direct=True) as ch:
        done = 0
        while done < size:
            n = min(len(buf), size - done)
            buf[:n] = data[done : done + n]
            ch.write(buf[:n], position=done)
            done += n
    return data
