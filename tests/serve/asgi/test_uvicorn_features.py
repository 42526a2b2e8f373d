"""What uvicorn's options do under zcopy, on real servers: --reload, --interface asgi2/wsgi (file_wrapper by
sendfile), permessage-deflate, --limit-max-requests with workers, `zcopy serve MODULE:ATTR`, and the parsers of
every subcommand (no abbreviations, the subcommand's own usage)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest

from zcopy.cli import COMMANDS, build_parser

from .conftest import REPO, AppServer, make_data
from .uvapps import upgrade

UV = "tests.serve.asgi.uvapps"


def test_every_subcommand_refuses_abbreviations_under_its_own_usage(tmp_path: Path) -> None:
    import argparse

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == set(COMMANDS)
    for name, sub in subs.choices.items():
        assert sub.allow_abbrev is False, name
    assert parser.allow_abbrev is False
    (tmp_path / "a").write_bytes(b"x")
    r = subprocess.run(
        [sys.executable, "-m", "zcopy", "cp", str(tmp_path / "a"), str(tmp_path / "b"), "--no-such-option"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("usage: zcopy cp "), r.stderr
    assert "unrecognized arguments: --no-such-option" in r.stderr and not (tmp_path / "b").exists(), r.stderr
    # `--header-t` was once taken for --header-timeout; no prefix is an option any more.
    r = subprocess.run(
        [sys.executable, "-m", "zcopy", "serve", str(tmp_path), "--header-t", "5"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "unrecognized arguments: --header-t" in r.stderr, r.stderr
    assert r.stderr.startswith("usage: zcopy serve "), r.stderr


def test_positional_app_and_asgi2(tmp_path: Path) -> None:
    """`zcopy serve MODULE:ATTR` (uvicorn's positional APP); an ASGI 2 class found by --interface auto."""
    p = subprocess.Popen(
        [sys.executable, "-m", "zcopy", "serve", f"{UV}:Asgi2", "--port", "0", "--app-dir", str(REPO)],
        stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert p.stderr is not None
        port = 0
        while line := p.stderr.readline():
            m = re.search(r"http://127\.0\.0\.1:(\d+)/ app=", line)
            if m:
                port = int(m.group(1))
                break
        assert port, "no start-up line"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "asgi2"
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)
    assert p.returncode == 0
    s = AppServer(f"{UV}:Asgi2", make_data(tmp_path / "d"), "--interface", "asgi2")
    try:
        assert httpx.get(s.url + "/", timeout=10).text == "asgi2"
    finally:
        assert s.stop()[0] == 0


def test_wsgi_app_and_file_wrapper_by_sendfile(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    log = tmp_path / "access.json"
    s = AppServer(
        f"{UV}:wsgi", make_data(tmp_path / "d"), "--interface", "wsgi", "--access-log-file", str(log), "--json-log",
        env={"UVAPP_FILE": str(big)},
    )  # fmt: skip
    try:
        r = httpx.post(s.url + "/echo?x=1", content=b"body!", timeout=10)
        assert r.status_code == 200 and r.text == "POST /echo?x=1 body!"
        r = httpx.get(s.url + "/file", timeout=30)
        assert r.status_code == 200 and r.content == big.read_bytes()
    finally:
        assert s.stop()[0] == 0
    routes = [json.loads(line)["route"] for line in log.read_text().splitlines()]
    assert routes == ["memory", "sendfile"], routes  # the file_wrapper's file left by sendfile


def _upgrade(port: int, extra: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return upgrade(s, "/ws", extra)[0].lower()


def test_permessage_deflate_as_uvicorn(tmp_path: Path) -> None:
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    s = AppServer(f"{UV}:app", make_data(tmp_path / "d"))
    try:
        assert b"sec-websocket-extensions: permessage-deflate" in _upgrade(s.addr[1], offer)  # on by default
        assert b"sec-websocket-extensions" not in _upgrade(s.addr[1])  # only when offered
    finally:
        assert s.stop()[0] == 0
    s = AppServer(f"{UV}:app", make_data(tmp_path / "d2"), "--ws-per-message-deflate", "false")
    try:
        head = _upgrade(s.addr[1], offer)
        assert head.startswith(b"http/1.1 101") and b"sec-websocket-extensions" not in head
    finally:
        assert s.stop()[0] == 0


def _deflated_frame(payload: bytes) -> bytes:
    """One masked, compressed (RSV1) text frame as a permessage-deflate client sends it (RFC 7692 §7.2.1)."""
    c = zlib.compressobj(wbits=-15)
    body = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    body = body[:-4]  # without the 00 00 ff ff tail
    mask = os.urandom(4)
    n = len(body)
    size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else (
        bytes([0x80 | 127]) + n.to_bytes(8, "big"))  # fmt: skip
    return bytes([0xC1]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body))


def test_permessage_deflate_messages_and_the_inflation_bound(tmp_path: Path) -> None:
    """A compressed message is inflated and echoed; one that inflates past --ws-max-size is stopped at the bound
    (wsproto alone inflates whatever a read brings) and closed with 1009."""
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    s = AppServer(f"{UV}:app", make_data(tmp_path / "d"), "--ws-max-size", "65536")
    try:
        with socket.create_connection(s.addr, timeout=10) as c:
            head, rest = upgrade(c, "/ws", offer)
            assert b"permessage-deflate" in head.lower()
            c.sendall(_deflated_frame(b"hello " * 1000))
            while len(rest) < 2:
                rest += c.recv(65536)
            assert rest[0] & 0x40  # the echo came back compressed too (RSV1)
        with socket.create_connection(s.addr, timeout=10) as c:
            head, rest = upgrade(c, "/ws", offer)
            c.sendall(_deflated_frame(bytes(4 << 20)))  # 4 MiB of zeros in ~4 KiB
            data = rest
            with contextlib.suppress(OSError):
                while chunk := c.recv(65536):
                    data += chunk
            close = data[data.index(b"\x88") :]  # the server's close frame: 1009
            assert int.from_bytes(close[2:4], "big") == 1009, data[:64]
    finally:
        code, err = s.stop()
    assert code == 0, err


def test_limit_max_requests_replaces_workers(tmp_path: Path) -> None:
    s = AppServer(f"{UV}:app", make_data(tmp_path / "d"), "--workers", "2", "--limit-max-requests", "1")
    try:
        for _ in range(4):  # each worker serves one request, then another takes its place
            with httpx.Client(timeout=30) as c:
                assert c.get(s.url + "/json").status_code == 200
    finally:
        code, err = s.stop()
    assert code == 0, err
    assert err.count("Maximum request limit of 1 exceeded. Terminating process.") >= 3, err
    assert err.count("served its request limit; starting another") >= 3, err
    assert "Started parent process [" in "".join(s.before) and "Stopping parent process [" in err, err  # uvicorn's


def test_reload_restarts_on_a_change(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    app_dir = tmp_path / "src"
    app_dir.mkdir()
    mod = app_dir / "reloadme.py"
    body = (
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'VERSION'})\n"
    )
    mod.write_text(body.replace("VERSION", "one"))
    p = subprocess.Popen(
        [sys.executable, "-m", "zcopy", "serve", "--app", "reloadme:app", "--app-dir", str(app_dir), "--port", "0",
         "--reload", "--reload-dir", str(app_dir), "--reload-delay", "0.1", "--no-access-log"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    lines: list[str] = []

    def wait_for(text: str, count: int = 1) -> str:
        assert p.stderr is not None
        deadline = time.monotonic() + 60
        while sum(text in line for line in lines) < count:
            line = p.stderr.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        return [line for line in lines if text in line][-1]

    try:
        wait_for("Started reloader process")
        port = int(re.search(r"\('127\.0\.0\.1', (\d+)\)", wait_for("zcopy running on socket")).group(1))  # type: ignore[union-attr]
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "one"
        time.sleep(0.5)  # the watcher is set up once the first child runs; give it a moment to start watching
        mod.write_text(body.replace("VERSION", "two"))
        wait_for("WatchFiles detected changes in")
        wait_for("zcopy running on socket", 2)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "two"  # same port, new code
    finally:
        p.send_signal(signal.SIGTERM)
        _, rest = p.communicate(timeout=30)
    assert p.returncode == 0, "".join(lines) + rest
    assert "Stopping reloader process" in rest, rest


def test_inflation_stops_at_the_bound() -> None:
    """In wsproto itself: with the bounded extension no event carries more than the bound (the plain extension
    would hand over all 4 MiB at once), and the verdict is 1009."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, TextMessage

    from zcopy.serve.asgi.websocket import bounded_deflate

    ws = WSConnection(ConnectionType.SERVER)
    ws.initiate_upgrade_connection(
        [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
         (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="), (b"sec-websocket-version", b"13"),
         (b"sec-websocket-extensions", b"permessage-deflate")],
        b"/ws",
    )  # fmt: skip
    list(ws.events())
    ws.send(AcceptConnection(extensions=[bounded_deflate(65536)]))
    ws.receive_data(_deflated_frame(b"small"))
    ws.receive_data(_deflated_frame(bytes(4 << 20)))
    events = list(ws.events())
    assert isinstance(events[0], TextMessage) and events[0].data == "small"
    assert all(len(e.data) <= 65537 for e in events if isinstance(e, TextMessage))
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009
