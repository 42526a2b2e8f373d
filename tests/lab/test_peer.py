from __future__ import annotations

import os
import socket
from pathlib import Path

from zcopy.lab.peer import Peer


def test_sink_counts_what_it_discards() -> None:
    with Peer("sink") as peer:
        assert peer.address is not None
        with socket.create_connection(peer.address) as s:
            s.sendall(b"x" * 300_000)
        assert peer.finish() == 300_000


def test_source_sends_count_bytes_repeating_the_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"0123456789")
    with Peer("source", str(f), "25") as peer:
        assert peer.address is not None
        got = b""
        with socket.create_connection(peer.address) as s:
            while chunk := s.recv(100):
                got += chunk
        assert peer.finish() == 25
    assert got == b"0123456789" * 2 + b"01234"


def test_drain_reads_a_pipe() -> None:
    with Peer("drain") as peer:
        os.write(peer.stdin_fd(), b"y" * 70_000)
        assert peer.finish() == 70_000


def test_peer_reports_its_cpu_for_the_transfer() -> None:
    with Peer("sink") as peer:
        assert peer.address is not None
        with socket.create_connection(peer.address) as s:
            s.sendall(b"z" * (8 << 20))
        assert peer.finish() == 8 << 20
    assert peer.cpu_user_s >= 0 and peer.cpu_sys_s >= 0
    assert peer.cpu_user_s + peer.cpu_sys_s > 0  # 8 MiB of recv costs well over the 1 µs resolution: measured
    assert peer.cpu_user_s + peer.cpu_sys_s < 5  # the transfer only, not a runaway or the interpreter's life
