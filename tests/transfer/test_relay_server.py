"""zcopy.relay: pairing by nameplate, every limit, endings and their log lines, graceful shutdown — driven by
real clients on 127.0.0.1 (zcopy.transfer.pairing.dial, or raw bytes where a real client never would)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import pytest

from zcopy.relay import format_line
from zcopy.relay import protocol as rp
from zcopy.transfer.pairing import RelayError, dial

from .conftest import RelayThread

S, R = rp.SIDE_SENDER, rp.SIDE_RECEIVER


def _join_later(relay: RelayThread, side: int, plate: str | None, out: list[object]) -> threading.Thread:
    def run() -> None:
        try:
            out.append(dial(relay.address, side, plate, timeout=10))
        except Exception as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _until(cond: Callable[[], bool], what: str) -> None:
    """Wait for the relay thread to get there (bounded generously: the machine is shared)."""
    deadline = time.monotonic() + 20
    while not cond():
        assert time.monotonic() < deadline, f"relay never reached: {what}"
        time.sleep(0.005)


def _recv_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while chunk := sock.recv(65536):
        out += chunk
    return bytes(out)


def _pair(relay: RelayThread) -> tuple[socket.socket, socket.socket, str]:
    placed: list[str] = []
    got: list[object] = []
    t = _join_later(relay, S, None, got)
    _until(lambda: bool(relay.relay.sessions), "a nameplate")
    plate = next(iter(relay.relay.sessions))
    rsock, rplate = dial(relay.address, R, plate, timeout=10, on_waiting=placed.append)
    t.join(20)
    ssock, splate = got[0]  # type: ignore[misc]
    assert splate == rplate == plate == placed[0]
    return ssock, rsock, plate


def test_matching_nameplates_meet_and_bytes_flow_both_ways(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay()
    ssock, rsock, plate = _pair(relay)
    assert plate == "1"  # the relay allocates the smallest free nameplate
    there = bytes(range(256)) * 4096  # 1 MiB sender → receiver
    back = b"ack" * 1000
    t = threading.Thread(target=lambda: (ssock.sendall(there), ssock.shutdown(socket.SHUT_WR)))
    t.start()
    rsock.sendall(back)
    rsock.shutdown(socket.SHUT_WR)
    assert _recv_all(rsock) == there
    assert _recv_all(ssock) == back
    t.join()
    ssock.close()
    rsock.close()
    (line,) = relay.wait_for("session")
    assert line["end"] == "done" and line["paired"] is True and line["route"] == "splice"
    assert line["bytes_sender_to_receiver"] == len(there) and line["bytes_receiver_to_sender"] == len(back)
    assert set(line["peers"]) == {"sender", "receiver"}  # type: ignore[arg-type]
    text = format_line(line)
    assert "session 1 done" in text and f"sender→receiver {len(there)} B" in text and "route splice" in text
    assert not relay.relay.sessions and not relay.relay.per_ip  # everything let go


def test_either_side_may_come_first(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay()
    got: list[object] = []
    t = _join_later(relay, R, "42", got)  # the receiver waits on a nameplate the sender chose (--code)
    _until(lambda: "42" in relay.relay.sessions, "nameplate 42")
    ssock, _ = dial(relay.address, S, "42", timeout=10)
    t.join(20)
    rsock, _ = got[0]  # type: ignore[misc]
    ssock.sendall(b"hello")
    assert rsock.recv(5) == b"hello"
    ssock.close()
    rsock.close()


def test_a_third_client_is_refused(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay()
    ssock, rsock, plate = _pair(relay)
    with pytest.raises(RelayError, match=f"nameplate {plate} is in use"):
        dial(relay.address, R, plate, timeout=10)
    with pytest.raises(RelayError, match="in use"):
        dial(relay.address, S, plate, timeout=10)
    # The pair is undisturbed.
    ssock.sendall(b"still here")
    assert rsock.recv(10) == b"still here"
    # Two of the same side are refused too, before any pairing.
    got: list[object] = []
    t = _join_later(relay, S, "7", got)
    _until(lambda: "7" in relay.relay.sessions, "nameplate 7")
    with pytest.raises(RelayError, match="in use"):
        dial(relay.address, S, "7", timeout=10)
    refused = relay.wait_for("refused", 3)
    assert all(r["reason"] == "nameplate in use" for r in refused)
    ssock.close()
    rsock.close()
    relay.stop()
    t.join(20)
    assert isinstance(got[0], RelayError)  # told the relay is shutting down


def test_pairing_timeout(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay(pairing_timeout=0.3)
    placed: list[str] = []
    with pytest.raises(RelayError, match=r"no peer joined nameplate 1 within 0.3 s"):
        dial(relay.address, S, None, timeout=10, on_waiting=placed.append)
    assert placed == ["1"]
    (line,) = relay.wait_for("session")
    assert line["end"] == "pairing timeout" and line["paired"] is False
    assert not relay.relay.sessions and not relay.relay.per_ip


def test_session_limit(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay(max_sessions=1)
    got: list[object] = []
    t = _join_later(relay, S, None, got)
    _until(lambda: bool(relay.relay.sessions), "a nameplate")
    with pytest.raises(RelayError, match=r"the relay is full \(1 sessions\)"):
        dial(relay.address, S, None, timeout=10)
    with pytest.raises(RelayError, match="full"):
        dial(relay.address, R, "9", timeout=10)
    rsock, _ = dial(relay.address, R, "1", timeout=10)  # joining the existing one is still fine
    t.join(20)
    rsock.close()
    got[0][0].close()  # type: ignore[index]


def test_connections_per_address_limit(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay(max_per_address=2)
    held = [socket.create_connection(relay.address) for _ in range(2)]
    _until(lambda: sum(relay.relay.per_ip.values()) == 2, "two connections")
    with pytest.raises(RelayError, match=r"too many connections from 127.0.0.1 \(limit 2\)"):
        dial(relay.address, S, None, timeout=10)
    held.pop().close()
    _until(lambda: sum(relay.relay.per_ip.values()) == 1, "one connection")
    got: list[object] = []
    t = _join_later(relay, S, None, got)  # a slot is free again
    _until(lambda: bool(relay.relay.sessions), "a nameplate")
    relay.stop()
    t.join(20)
    held[0].close()


def test_idle_timeout_ends_a_silent_session(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay(idle_timeout=0.3)
    ssock, rsock, _ = _pair(relay)
    ssock.sendall(b"x")
    assert rsock.recv(1) == b"x"
    assert _recv_all(rsock) == b""  # then nothing for 0.3 s: the relay closes both
    assert _recv_all(ssock) == b""
    (line,) = relay.wait_for("session")
    assert line["end"] == "idle timeout" and line["bytes_sender_to_receiver"] == 1


def test_byte_limit_ends_the_session(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay(max_bytes=100_000)
    ssock, rsock, _ = _pair(relay)

    def push() -> None:
        with contextlib.suppress(OSError):  # the relay cut us off: that is the point
            ssock.sendall(b"z" * 1_000_000)

    t = threading.Thread(target=push)
    t.start()
    got = _recv_all(rsock)
    t.join(20)
    assert 100_000 <= len(got) < 1_000_000
    (line,) = relay.wait_for("session")
    assert line["end"] == "byte limit"


def test_bad_requests_are_refused(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay()
    for data, why in [(b"GET / HTTP/1.1\r\n\r\n", "not a zcopy relay request"),
                      (b"ZREL\x09\x01\x01\x00", "version"),
                      (rp.Request(rp.OP_JOIN, S, "07").encode(), "no leading zero"),
                      (rp.Request(rp.OP_JOIN, S, "12a").encode()[:-3] + b"x1\x00", "positive number")]:
        with socket.create_connection(relay.address, timeout=10) as sock:
            sock.sendall(data)
            head = sock.recv(rp.REPLY_HEAD, socket.MSG_WAITALL)
            n = rp.reply_length(head)
            rep = rp.decode_reply(head, sock.recv(n, socket.MSG_WAITALL))
            assert rep.status == rp.ST_REFUSED and why in rep.text, rep
    # A waiting client that speaks before it is paired breaks the protocol: refused, nameplate freed.
    with socket.create_connection(relay.address, timeout=10) as sock:
        sock.sendall(rp.Request(rp.OP_ALLOCATE, S).encode())
        sock.recv(rp.REPLY_HEAD + 16)
        sock.sendall(b"too early")
        assert b"sent data before it was paired" in _recv_all(sock)
    line = relay.wait_for("session")[0]
    assert line["end"] == "bad request"
    assert not relay.relay.sessions


def test_graceful_shutdown_lets_paired_sessions_finish(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay(grace=20)
    ssock, rsock, _ = _pair(relay)
    got: list[object] = []
    t = _join_later(relay, S, None, got)  # a lone waiter: told at once
    _until(lambda: len(relay.relay.sessions) == 2, "two nameplates")
    relay.relay.shutdown()
    t.join(20)
    assert isinstance(got[0], RelayError) and "shutting down" in str(got[0])
    with pytest.raises(OSError):
        socket.create_connection(relay.address, timeout=5)  # no longer accepting
    ssock.sendall(b"after the signal")  # the paired session still works
    ssock.shutdown(socket.SHUT_WR)
    assert _recv_all(rsock) == b"after the signal"
    rsock.close()
    ssock.close()
    relay.thread.join(20)
    assert not relay.thread.is_alive()
    ends = {line["end"] for line in relay.sessions()}
    assert ends == {"shutdown", "done"}
    assert relay.logs[-1]["event"] == "stopped"


def test_grace_runs_out(start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay(grace=0.3)
    ssock, rsock, _ = _pair(relay)
    relay.relay.shutdown()
    relay.thread.join(20)
    assert not relay.thread.is_alive()
    assert _recv_all(rsock) == b"" and _recv_all(ssock) == b""
    assert [line["end"] for line in relay.sessions()] == ["shutdown"]
