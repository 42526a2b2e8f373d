"""A receiver serves sessions at once (issue #20 F4): idle and drip-feeding peers never hold a real sender up, every
connection has an overall deadline to authenticate, the handshake and session pools are bounded, and two sessions
never write the same path."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from zcopy.transfer import Receiver, RemoteError, SessionResult, send
from zcopy.transfer import checksum as ck
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import E_EXISTS
from zcopy.transfer.recv_gate import Busy, Claims, Gate

from .conftest import RawSender, assert_same_tree, make_tree, partials


class Serving:
    """A Receiver running serve_forever in a thread; every session's result is kept."""

    def __init__(self, directory: Path, **kw: object) -> None:
        self.rx = Receiver(directory, ("127.0.0.1", 0), **kw)  # type: ignore[arg-type]
        self.results: list[SessionResult] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed by the test
            self.rx.serve_forever(self.results.append)

    def wait_results(self, n: int, limit: float = 30.0) -> list[SessionResult]:
        end = time.monotonic() + limit
        while len(self.results) < n and time.monotonic() < end:
            time.sleep(0.01)
        assert len(self.results) >= n, self.results
        return self.results

    def close(self) -> None:
        self.rx.close()
        self.thread.join(10)
        assert not self.thread.is_alive()


def _closed_by_peer(sock: socket.socket, limit: float) -> bool:
    """Whether the receiver ends the connection (EOF or reset) within `limit` seconds; drains what it says."""
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def test_an_idle_connection_does_not_hold_up_a_real_sender(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", big=4 << 20)
    dst = tmp_path / "dst"
    dst.mkdir()
    # Deadlines far longer than the send may take: one session at a time would wait for the idle peer's.
    srv = Serving(dst, plain=True, timeout=120, auth_timeout=120)
    try:
        idle = socket.create_connection(srv.rx.address)
        res = send([tree], srv.rx.address, plain=True, timeout=30)
        assert res.ok
        assert_same_tree(tree, dst / "tree")
        # The idle peer is still connected (its deadline is far off): the send did not wait for it to go.
        idle.setblocking(False)
        with pytest.raises(BlockingIOError):
            while idle.recv(1 << 20):  # the receiver's preamble and OPEN, then nothing: EAGAIN, not EOF
                pass
    finally:
        idle.close()
        srv.close()


def test_a_drip_feeding_peer_is_cut_at_the_auth_deadline(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    srv = Serving(dst, plain=True, auth_timeout=1.0, timeout=60)
    try:
        drip = socket.create_connection(srv.rx.address)
        hello = p.encode_preamble() + p.Open(p.M_PLAIN).encode()
        stop = threading.Event()

        def feed() -> None:  # one byte at a time, each well inside the 60 s stall timeout
            for b in hello:
                if stop.wait(0.2):
                    return
                try:
                    drip.send(bytes([b]))
                except OSError:
                    return

        t = threading.Thread(target=feed, daemon=True)
        t.start()
        t0 = time.monotonic()
        assert _closed_by_peer(drip, 30), "the drip-feeding peer was never cut off"
        took = time.monotonic() - t0
        stop.set()
        t.join(5)
        # A control on the same run: the stall timeout (60 s) was never what ended it.
        assert took < 30
        [res] = srv.wait_results(1)
        assert res.error is not None and "no authentication within 1 s (--auth-timeout)" in res.error
        # Meanwhile and after, a real sender is served.
        f = tmp_path / "f.txt"
        f.write_text("after the drip\n")
        assert send([f], srv.rx.address, plain=True).ok
        assert (dst / "f.txt").read_text() == "after the drip\n"
    finally:
        drip.close()
        srv.close()


def test_the_handshake_pool_is_bounded_and_freed(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    srv = Serving(dst, plain=True, max_handshakes=2, auth_timeout=60)
    idle = [socket.create_connection(srv.rx.address) for _ in range(2)]
    try:
        # Both are in their handshake: the receiver's preamble arrives on each.
        for s in idle:
            s.settimeout(10)
            assert s.recv(4)
        third = socket.create_connection(srv.rx.address)
        assert _closed_by_peer(third, 10), "a third connection in its handshake was let in"
        third.close()
        for s in idle:
            s.close()
        srv.wait_results(2)  # both idle ones ended (EOF) and gave their places back
        f = tmp_path / "f.txt"
        f.write_text("x\n")
        assert send([f], srv.rx.address, plain=True).ok
    finally:
        for s in idle:
            s.close()
        srv.close()


def _stalled_session(address: tuple[str, int], name: bytes) -> RawSender:
    """An authenticated session (plain, no token) that announced one large file and then sends nothing."""
    raw = RawSender(address, ck.NONE)
    raw.send(raw.manifest((p.Entry(name, False, 1 << 20, 0o644, 0),)))
    raw.expect(p.PlanEnd)
    return raw


def test_sessions_at_once_are_bounded_by_max_sessions(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    srv = Serving(dst, plain=True, max_sessions=1)
    raw = _stalled_session(srv.rx.address, b"held.bin")
    try:
        f = tmp_path / "f.txt"
        f.write_text("x\n")
        with pytest.raises(RemoteError, match=r"busy: 1 session\(s\) at once \(--max-sessions\)"):
            send([f], srv.rx.address, plain=True)
        assert not (dst / "f.txt").exists()
        raw.finish()  # the first session ends: its slot is free again
        srv.wait_results(2)
        assert send([f], srv.rx.address, plain=True).ok
    finally:
        srv.close()


def test_two_sessions_never_write_the_same_path(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "same.bin").write_bytes(os.urandom(1 << 20))
    dst = tmp_path / "dst"
    dst.mkdir()
    srv = Serving(dst, plain=True)
    raw = _stalled_session(srv.rx.address, b"same.bin")
    try:
        with pytest.raises(RemoteError, match=r"same\.bin is being received by another session") as info:
            send([src / "same.bin"], srv.rx.address, plain=True)
        assert info.value.code == E_EXISTS
        # Another path is fine at the same time.
        (src / "other.bin").write_bytes(b"o" * 1000)
        assert send([src / "other.bin"], srv.rx.address, plain=True).ok
        raw.finish()
        srv.wait_results(3)
        assert send([src / "same.bin"], srv.rx.address, plain=True).ok  # the claim went with its session
        assert (dst / "same.bin").read_bytes() == (src / "same.bin").read_bytes()
        assert not partials(dst)
    finally:
        srv.close()


def test_serve_once_is_not_ended_by_a_connection_that_never_authenticates(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", big=1000)
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = Receiver(dst, ("127.0.0.1", 0), plain=True, auth_timeout=0.5)
    others: list[SessionResult] = []
    out: list[SessionResult] = []
    t = threading.Thread(target=lambda: out.append(rx.serve_once(others.append)), daemon=True)
    t.start()
    try:
        socket.create_connection(rx.address).close()  # lost before authenticating
        idle = socket.create_connection(rx.address)  # timed out before authenticating
        assert _closed_by_peer(idle, 30)
        idle.close()
        end = time.monotonic() + 30
        while len(others) < 2 and time.monotonic() < end:
            time.sleep(0.01)
        assert len(others) == 2 and t.is_alive()
        assert send([tree], rx.address, plain=True).ok
        t.join(30)
        assert not t.is_alive() and out[0].ok and out[0].files > 0
    finally:
        rx.close()


def test_gate_and_claims_unit() -> None:
    gate = Gate(max_sessions=1, max_handshakes=2)
    a, b = gate.enter(), gate.enter()
    assert a is not None and b is not None and gate.enter() is None
    a.admit()
    assert (gate.handshakes, gate.sessions) == (1, 1)
    with pytest.raises(Busy):
        b.admit()
    assert (gate.handshakes, gate.sessions) == (0, 1)
    b.release()
    a.release()
    a.release()  # idempotent
    assert (gate.handshakes, gate.sessions) == (0, 0)
    claims = Claims()
    held = claims.claim([(b"a",), (b"d", b"b")])
    with pytest.raises(Exception, match=r"d/b is being received"):
        claims.claim([(b"c",), (b"d", b"b")])
    assert len(claims) == 2  # the failed claim took nothing
    claims.release(held)
    assert len(claims) == 0
