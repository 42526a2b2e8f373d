"""What `send --json` and `recv --json` claim as zero-copy: the sender's claim about its own bytes, and the
session's, which follows the receiver's report in BYE. No claim (null) when no body byte moved."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from zcopy import _sys
from zcopy.transfer.results import session_zero_copy, zero_copy

from .conftest import ZCOPY, direct_here, spawn_recv


def test_claims_are_pure_and_never_vacuous() -> None:
    assert zero_copy("sender", {}, "none") is None and zero_copy("receiver", None, "none") is None
    assert zero_copy("sender", {"sendfile": 0}, "none") is None  # a route that moved nothing is no claim
    assert zero_copy("sender", {"sendfile": 5, "readwrite": 0}, "none") is True
    assert zero_copy("sender", {"sendfile": 5}, "tls1.3") is False
    assert zero_copy("sender", {"sendfile": 5, "readwrite": 1}, "none") is False
    assert zero_copy("receiver", {"splice": 5}, "none") is True
    assert zero_copy("receiver", {"direct": 5}, "none") is False  # one CPU copy into the receive buffer
    assert zero_copy("receiver", {"sendfile": 5}, "none") is False
    assert session_zero_copy(True, False) is False and session_zero_copy(True, True) is True
    assert session_zero_copy(True, None) is None and session_zero_copy(None, True) is None


def _session(tmp_path: Path, files: dict[str, bytes], *recv_args: str) -> tuple[dict[str, object], dict[str, object]]:
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    dst = tmp_path / "dst"
    dst.mkdir()
    recv, port = spawn_recv(dst, "--once", "--json", "--plain", *recv_args)
    out = subprocess.run([*ZCOPY, "send", *(str(src / n) for n in files), f"127.0.0.1:{port}", "--json", "--plain"],
                         capture_output=True, text=True, timeout=60)
    rout, rerr = recv.communicate(timeout=30)
    assert out.returncode == 0 and recv.returncode == 0, (out.stderr, rerr)
    return json.loads(out.stdout), json.loads(rout)


@pytest.mark.parametrize("cache", [False, True])
def test_plain_send_claims_its_own_bytes_and_the_session_follows_the_receiver(tmp_path: Path, cache: bool) -> None:
    sent, got = _session(tmp_path, {"big.bin": b"z" * (1 << 20)}, *(["--cache"] if cache else []))
    assert sent["routes"]["sender"] == {"sendfile": 1 << 20}  # type: ignore[index]
    assert sent["zero_copy_sender"] is True
    rx_route = "splice" if (cache or not direct_here(tmp_path / "dst")) and _sys.HAS_SPLICE else "direct"
    assert got["routes"] == {rx_route: 1 << 20} or not _sys.HAS_SPLICE
    # The default direct receiver copies each byte once into its buffer: the session is not zero-copy.
    assert got["zero_copy"] is (rx_route == "splice") and sent["zero_copy"] is (rx_route == "splice")


def test_no_body_byte_moved_is_no_claim(tmp_path: Path) -> None:
    sent, got = _session(tmp_path, {"empty": b""})
    assert sent["zero_copy_sender"] is None and sent["zero_copy"] is None and got["zero_copy"] is None
