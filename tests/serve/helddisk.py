"""A disk whose reads block on demand: an ext4 image on a loop device in a temp dir, throttled by a blkio cgroup.

``hold()`` sets the cgroup's read limit on the loop device to 1 byte/s, so any read that misses the page cache and
comes from a thread in the cgroup waits (in state D) until ``release()`` lifts the limit. Only threads moved into
the cgroup (``join``) are held; the test's own threads read freely. Needs root, cgroup v1 blkio, mkfs.ext4 and loop
devices: ``HeldDisk.make`` skips the test with the reason when one is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zcopy.pagecache import residency

BLKIO = Path("/sys/fs/cgroup/blkio")


def _own_blkio() -> Path:
    """The blkio cgroup this process is in (its children are ours to make)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "blkio" in controllers.split(","):
            return BLKIO / path.lstrip("/")
    return BLKIO


class HeldDisk:
    def __init__(self, mnt: Path, device: str, cgroup: Path, parent: Path) -> None:
        self.mnt = mnt
        self.device = device  # "MAJ:MIN" of the loop device
        self.cgroup = cgroup
        self.parent = parent

    @classmethod
    def make(cls, tmp: Path) -> HeldDisk:
        if os.geteuid() != 0:
            pytest.skip("a held disk needs root (loop mount, blkio cgroup)")
        if not (BLKIO / "blkio.throttle.read_bps_device").exists():
            pytest.skip("no cgroup v1 blkio throttle at /sys/fs/cgroup/blkio: cannot make reads wait for the disk")
        if shutil.which("mkfs.ext4") is None:
            pytest.skip("mkfs.ext4 not installed (e2fsprogs; .ci/run installs it)")
        img, mnt = tmp / "disk.img", tmp / "mnt"
        mnt.mkdir()
        with open(img, "wb") as f:
            f.truncate(64 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True, capture_output=True)
        done = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot loop-mount an image: {done.stderr.strip()}")
        source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mnt)], capture_output=True, text=True)
        rdev = os.stat(source.stdout.strip()).st_rdev
        parent = _own_blkio()
        cgroup = parent / f"zcopy-test-{os.getpid()}-{time.monotonic_ns()}"
        cgroup.mkdir()
        return cls(mnt, f"{os.major(rdev)}:{os.minor(rdev)}", cgroup, parent)

    def write(self, name: str, data: bytes) -> Path:
        """A file on the disk, written through and evicted from the page cache (its next read goes to the disk)."""
        path = self.mnt / name
        with open(path, "wb") as f:
            f.write(data)
        self.evict(path)
        return path

    def evict(self, path: Path) -> None:
        """Drop ``path``'s pages from the page cache; AssertionError if some stay.

        Pages still under I/O are skipped by the kernel, and reads that were queued in the held cgroup can stay in
        flight for many seconds after release() (blk-throttle, seen here: seconds to minutes). So after 2 s of
        trying, the file is replaced by a fresh copy of itself (a new inode: written, synced, then renamed over the
        old name) whose pages no read has touched; the old inode goes with its stuck pages."""
        if self._drop(path, 2.0):
            return
        data = path.read_bytes()
        fresh = path.with_name(f".{path.name}.fresh")
        with open(fresh, "wb") as f:
            f.write(data)
        os.rename(fresh, path)
        if not self._drop(path, 15.0):
            left = self._resident(path)
            raise AssertionError(f"{path}: {left} page(s) stay in the page cache after POSIX_FADV_DONTNEED")

    @staticmethod
    def _resident(path: Path) -> int:
        fd = os.open(path, os.O_RDONLY)
        try:
            return residency(fd).resident
        finally:
            os.close(fd)

    @staticmethod
    def _drop(path: Path, seconds: float) -> bool:
        """fsync, then POSIX_FADV_DONTNEED until no page of ``path`` is resident (False after ``seconds``)."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            end = time.monotonic() + seconds
            while True:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                if residency(fd).resident == 0:
                    return True
                if time.monotonic() > end:
                    return False
                time.sleep(0.05)
        finally:
            os.close(fd)

    def join(self, tid: int) -> None:
        """Move one thread (and the threads it starts later) into the held cgroup."""
        (self.cgroup / "tasks").write_text(str(tid))

    def leave(self, tid: int) -> None:
        """Move a thread back to the cgroup it came from."""
        (self.parent / "tasks").write_text(str(tid))

    def _limit(self, bps: int) -> None:
        (self.cgroup / "blkio.throttle.read_bps_device").write_text(f"{self.device} {bps}\n")

    def hold(self) -> None:
        self._limit(1)

    def release(self) -> None:
        self._limit(0)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.hold()
        try:
            yield
        finally:
            self.release()

    def waiting(self) -> list[int]:
        """Threads of the cgroup asleep in the kernel uninterruptibly (state D): waiting for the disk."""
        out = []
        for tid in (self.cgroup / "tasks").read_text().split():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{tid}/stat").read_text()
                if stat[stat.rindex(")") + 2] == "D":
                    out.append(int(tid))
        return out

    def wait_for_waiter(self, timeout: float = 10.0) -> None:
        """Until some thread of the cgroup waits for the disk (AssertionError after ``timeout``)."""
        end = time.monotonic() + timeout
        while not self.waiting():
            if time.monotonic() > end:
                raise AssertionError("no thread of the server waited for the held disk")
            time.sleep(0.01)

    def remove(self) -> None:
        self.release()
        for tid in (self.cgroup / "tasks").read_text().split():
            with contextlib.suppress(OSError):
                (self.parent / "tasks").write_text(tid)
        with contextlib.suppress(OSError):
            self.cgroup.rmdir()
        if subprocess.run(["umount", str(self.mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)  # busy: detach now, free later
