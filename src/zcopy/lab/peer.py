"""The other end of the lab's loopback sockets and pipes: a separate process, so its CPU is not ours.

`python -m zcopy.lab.peer sink` discards what a socket sends; `source FILE COUNT` sends COUNT bytes of FILE
(repeating it) to whoever connects; `drain` discards stdin. The parent reads the port from the first line of
stdout, then at the end its CPU user/sys seconds for the transfer and the byte total. The peer uses plain os
calls: it is a test fixture, not a route.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
from types import TracebackType

# 1 MiB drain buffer/pipe: the size zcopy's own routes use (zcopy._sys), so the peer never is the bottleneck.
_CHUNK = 1 << 20


def _drain(fd: int) -> int:
    """Discard everything readable on fd (socket or pipe) into /dev/null; splice when the kernel allows."""
    total = 0
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        if hasattr(os, "splice"):
            r, w = os.pipe()
            try:
                while True:
                    n = os.splice(fd, w, _CHUNK)
                    if n == 0:
                        return total
                    total += n
                    while n:
                        n -= os.splice(r, devnull, n)
            except OSError:
                if total:
                    raise
            finally:
                os.close(r)
                os.close(w)
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = os.readv(fd, [view])
            if n == 0:
                return total
            total += n
    finally:
        os.close(devnull)


def _serve(mode: str, argv: list[str]) -> int:
    if mode == "drain":
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        total = _drain(0)
        _report(ru0, total)
        return 0
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    print(lsock.getsockname()[1], flush=True)
    conn, _ = lsock.accept()
    lsock.close()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)  # from here on: the transfer's CPU, not interpreter start-up
    total = 0
    with conn:
        if mode == "sink":
            total = _drain(conn.fileno())
        elif mode == "source":
            path, count = argv[0], int(argv[1])
            fd = os.open(path, os.O_RDONLY)
            size = os.fstat(fd).st_size
            try:
                while total < count:
                    off = total % size
                    n = os.sendfile(conn.fileno(), fd, off, min(count - total, size - off))
                    if n == 0:
                        break
                    total += n
            finally:
                os.close(fd)
            conn.shutdown(socket.SHUT_WR)
            # Wait for the receiver's EOF: it comes after the ACKs for all our data, so this socket no longer
            # pins the file's page-cache pages (sendfile sends references to them) when we exit.
            while conn.recv(1 << 16):
                pass
        else:
            raise SystemExit(f"unknown peer mode {mode!r}")
    _report(ru0, total)
    return 0


def _report(ru0: resource.struct_rusage, total: int) -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{ru.ru_utime - ru0.ru_utime} {ru.ru_stime - ru0.ru_stime}", flush=True)
    print(total, flush=True)


class Peer:
    """A running peer process; use as a context manager. `address` is (host, port) for socket modes."""

    def __init__(self, mode: str, *args: str, stdin: int | None = None) -> None:
        self.mode = mode
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zcopy.lab.peer", mode, *args],
            stdin=subprocess.PIPE if mode == "drain" else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.address: tuple[str, int] | None = None
        # The peer's CPU while it moved the bytes (after accept / before draining), reported by finish().
        self.cpu_user_s = 0.0
        self.cpu_sys_s = 0.0
        if mode != "drain":
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line.strip():
                self.proc.wait()
                raise RuntimeError(f"peer {mode} failed to start (exit {self.proc.returncode})")
            self.address = ("127.0.0.1", int(line))

    def stdin_fd(self) -> int:
        assert self.proc.stdin is not None
        return self.proc.stdin.fileno()

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the peer to end and return the byte count it moved."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()  # the drain peer's EOF
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.wait(timeout=timeout)
        lines = out.splitlines()
        if len(lines) >= 2:
            user, sys_ = lines[-2].split()
            self.cpu_user_s, self.cpu_sys_s = float(user), float(sys_)
        return int(lines[-1]) if lines else -1

    def __enter__(self) -> Peer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.argv[2:]))
