"""Shared helpers for the send/recv tests: real trees on disk, a receiver thread, subprocess receivers."""

from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from zcopy.transfer import Receiver, SessionResult
from zcopy.transfer import checksum as ck
from zcopy.transfer import protocol as p
from zcopy.transfer.names import PARTIAL_SUFFIX


@pytest.fixture(autouse=True, scope="session")
def _receiver_identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every receiver in these tests (threads and subprocesses) makes and keeps its TLS key pair in a throwaway
    config directory, once per test session, never in the user's own."""
    old = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    yield
    if old is None:
        del os.environ["XDG_CONFIG_HOME"]
    else:
        os.environ["XDG_CONFIG_HOME"] = old


def make_tree(root: Path, seed: int = 1, big: int = 3 << 20) -> Path:
    """A tree with nested dirs, an empty dir, an empty file, odd modes and mtimes, one bigger file."""
    rnd = random.Random(seed)
    tree = root / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "empty_dir").mkdir()
    (tree / "empty_file").write_bytes(b"")
    (tree / "big.bin").write_bytes(rnd.randbytes(big))
    for i in range(12):
        (tree / "sub" / f"f{i:02}.dat").write_bytes(rnd.randbytes(rnd.randrange(1, 300_000)))
    (tree / "sub" / "deeper" / "ünïcode ☃.txt").write_text("snow\n" * 1000)
    os.chmod(tree / "sub" / "f00.dat", 0o600)
    os.chmod(tree / "sub" / "f01.dat", 0o755)
    os.utime(tree / "sub" / "f02.dat", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.chmod(tree / "empty_dir", 0o750)
    os.utime(tree / "empty_dir", ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    return tree


def snapshot(root: Path) -> dict[str, tuple[str, int, int, bytes]]:
    """path → (kind, mode, mtime_ns, content) for everything under root, partial files excluded."""
    out: dict[str, tuple[str, int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns, b"")
            elif stat.S_ISREG(st.st_mode) and not name.endswith(PARTIAL_SUFFIX.decode()):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, full.read_bytes())
    return out


def assert_same_tree(src: Path, dst: Path) -> None:
    a, b = snapshot(src), snapshot(dst)
    sa, sb = src.stat(), dst.stat()
    assert (stat.S_IMODE(sa.st_mode), sa.st_mtime_ns) == (stat.S_IMODE(sb.st_mode), sb.st_mtime_ns), "root dir"
    assert sorted(a) == sorted(b)
    for rel in a:
        assert a[rel][0] == b[rel][0], rel
        assert a[rel][3] == b[rel][3], f"{rel}: content differs"
        assert a[rel][1] == b[rel][1], f"{rel}: mode {oct(a[rel][1])} != {oct(b[rel][1])}"
        assert a[rel][2] == b[rel][2], f"{rel}: mtime differs"


def final_files_are_prefix_of_truth(src_root: Path, dst_root: Path) -> list[str]:
    """Every final-named file in dst must equal its source exactly; returns the names present."""
    present = []
    for dirpath, _, filenames in os.walk(dst_root):
        for name in filenames:
            if name.endswith(PARTIAL_SUFFIX.decode()):
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(dst_root)
            assert full.read_bytes() == (src_root / rel).read_bytes(), f"final-named {rel} is wrong"
            present.append(str(rel))
    return present


def direct_here(directory: Path) -> bool:
    """Whether the receiver lands large files in `directory` by O_DIRECT (its default): the file system must do
    direct I/O and not be a page-cache-only one (tmpfs); else it uses the page cache, and says so in its routes."""
    from zcopy import _sys
    from zcopy.aligned import dio_alignment, page_cache_fs

    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _sys.HAS_O_DIRECT and page_cache_fs(fd) is None and bool(dio_alignment(fd).offset)
    finally:
        os.close(fd)


def partials(root: Path) -> list[Path]:
    return [Path(d) / n for d, _, fs in os.walk(root) for n in fs if n.endswith(PARTIAL_SUFFIX.decode())]


class ReceiverThread:
    """A Receiver serving one session in a thread; `.result` after join()."""

    def __init__(self, directory: Path, **kw: object) -> None:
        self.rx = Receiver(directory, ("127.0.0.1", 0), **kw)  # type: ignore[arg-type]
        self.address = self.rx.address
        self.result: SessionResult | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed by the test before any session came
            self.result = self.rx.serve_once()

    def join(self, timeout: float = 30) -> SessionResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "receiver session did not end"
        self.rx.close()
        assert self.result is not None
        return self.result


@pytest.fixture
def start_receiver() -> Iterator[object]:
    started: list[ReceiverThread] = []

    def start(directory: Path, **kw: object) -> ReceiverThread:
        r = ReceiverThread(directory, **kw)
        started.append(r)
        return r

    yield start
    for r in started:
        r.rx.close()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real ENOSPC. Needs mount rights (root in CI's container)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for ENOSPC: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


ZCOPY = [sys.executable, "-m", "zcopy"]
_LISTEN = re.compile(r"listening on ([0-9.]+):(\d+)")


def spawn_recv(directory: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """`zcopy recv DIR --listen 127.0.0.1:0 --once ...` as a subprocess; returns it and its port."""
    # Without a token of the test's own, no token at all (a receiver would otherwise make one and require it).
    has_token = "--token" in args or "--no-token" in args or bool((env or os.environ).get("ZCOPY_TOKEN"))
    proc = subprocess.Popen(
        [*ZCOPY, "recv", str(directory), "--listen", "127.0.0.1:0", *args, *([] if has_token else ["--no-token"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = _LISTEN.search(line)
    if not m:
        proc.kill()
        raise AssertionError(f"recv did not start: {line!r} {proc.stderr.read()!r}")
    return proc, int(m.group(2))


class RawSender:
    """Speak the plain-mode protocol by hand (no token) up to the manifest, to send what a real sender never would."""

    def __init__(self, address: tuple[str, int], algo: int = ck.XXH3, flags: int = 0) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.nonce = b"n" * 32
        self.dec = p.Decoder("receiver")
        hello = p.Hello(p.FEATURES, self.nonce, algo, flags).encode()
        self.transcript = p.Transcript()
        self.transcript.add(hello[p.HEADER_SIZE :])
        self.sock.sendall(p.encode_preamble() + p.Open(p.M_PLAIN).encode() + hello)
        self.events: list[object] = []
        assert isinstance(self.expect(p.Open), p.Open)
        welcome = self.expect(p.Welcome)
        assert isinstance(welcome, p.Welcome)
        self.key = p.session_key(None, self.nonce, welcome.nonce)

    def expect(self, kind: type) -> object:
        while True:
            ev = self.dec.next_event()
            if ev is p.NEED_DATA:
                data = self.sock.recv(65536)
                assert data, f"connection closed while waiting for {kind.__name__}"
                self.dec.feed(data)
                continue
            self.events.append(ev)
            if isinstance(ev, kind):
                return ev

    def manifest(self, entries: tuple[p.Entry, ...]) -> bytes:
        """MANIFEST + a correctly sealed MANIFEST_END for `entries`."""
        frame = p.Manifest(entries).encode()
        self.transcript.add(frame[p.HEADER_SIZE :])
        end = p.ManifestEnd(len(entries), p.manifest_mac(self.key, self.transcript.digest(), len(entries)))
        return frame + end.encode()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def finish(self) -> list[object]:
        """Half-close, read everything the receiver still says; every receiver event of the session."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        rest = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                rest += chunk
        self.sock.close()
        self.dec.feed(rest)
        with contextlib.suppress(Exception):
            while (ev := self.dec.next_event()) is not p.NEED_DATA:
                self.events.append(ev)
        return self.events


class RelayThread:
    """A `zcopy relay` (zcopy.relay.Relay) on 127.0.0.1:0 in a thread; `.logs` collects its log dicts."""

    def __init__(self, **limits: object) -> None:
        from zcopy.relay import Limits, Relay

        self.logs: list[dict[str, object]] = []
        limits.setdefault("grace", 2.0)
        self.relay = Relay(("127.0.0.1", 0), Limits(**limits), self.logs.append)  # type: ignore[arg-type]
        self.address = self.relay.address
        self.thread = threading.Thread(target=self.relay.serve_forever, daemon=True)
        self.thread.start()

    def sessions(self) -> list[dict[str, object]]:
        return [line for line in list(self.logs) if line["event"] == "session"]

    def wait_for(self, event: str, count: int = 1, timeout: float = 20.0) -> list[dict[str, object]]:
        """The first `count` log lines of `event`, waiting for them (bounded generously: the machine is shared)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            got = [line for line in list(self.logs) if line["event"] == event]
            if len(got) >= count or time.monotonic() > deadline:
                assert len(got) >= count, f"relay logged {got!r}, waiting for {count} {event!r}"
                return got
            time.sleep(0.01)

    def stop(self) -> None:
        self.relay.shutdown()
        self.thread.join(30)
        assert not self.thread.is_alive(), "relay did not stop"


@pytest.fixture
def start_relay() -> Iterator[object]:
    started: list[RelayThread] = []

    def start(**limits: object) -> RelayThread:
        r = RelayThread(**limits)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.thread.is_alive():
            r.stop()
