"""zcopy's log lines against uvicorn's: the same app, the same requests, uvicorn itself run as the reference.

Ports and pids differ between the two runs, so both are replaced by placeholders before comparing; the server's
name is the only other difference allowed ("Uvicorn running on" → "zcopy running on").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO
from .uvapps import upgrade

pytest.importorskip("uvicorn")
APP = "tests.serve.asgi.uvapps:app"


def _get(port: int, target: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def _websocket(port: int, path: str) -> int:
    """Open a WebSocket, send one text message and read its echo, then close; returns the handshake status."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head, rest = upgrade(s, path)
        status = int(head.split(b" ", 2)[1])
        if status == 101:
            mask = os.urandom(4)
            s.sendall(bytes([0x81, 0x82]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi")))
            while len(rest) < 4:  # the echo: 0x81 0x02 'hi'
                rest += s.recv(4096)
            close = bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate((1000).to_bytes(2, "big")))
            s.sendall(close)
            with contextlib.suppress(OSError):
                while s.recv(4096):
                    pass
    return status


def _serve(argv: list[str], tmp: Path, name: str) -> tuple[str, str]:
    """Start a server on a socket we bound (--fd), run the same requests, stop it with SIGINT (Ctrl+C)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    out_path, err_path = tmp / f"{name}.out", tmp / f"{name}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = subprocess.Popen(
            [*argv, "--fd", str(listener.fileno())], stdout=out, stderr=err, cwd=REPO,
            pass_fds=(listener.fileno(),), env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    listener.close()
    try:
        deadline = time.monotonic() + 60
        while "running on" not in err_path.read_text():
            assert p.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.05)
        assert _get(port, "/json?q=1&r=%22x%22") == 200
        assert _get(port, "/teapot") == 418
        assert _websocket(port, "/ws") == 101
        assert _websocket(port, "/ws-deny") == 403
        time.sleep(0.5)  # the close lines are written after the client has gone
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return _normal(out_path.read_text()), _normal(err_path.read_text())


def _normal(text: str) -> str:
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"\('127\.0\.0\.1', \d+\)", "('127.0.0.1', PORT)", text)
    return re.sub(r"\[\d+\]", "[PID]", text)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("uvlogs")
    uv = [sys.executable, "-m", "uvicorn", APP, "--app-dir", str(REPO), "--ws", "wsproto", "--no-use-colors"]
    zc = [sys.executable, "-m", "zcopy", "serve", "--app", APP, "--app-dir", str(REPO), "--no-use-colors"]
    return {
        "uvicorn": _serve(uv, tmp, "uvicorn"),
        "zcopy": _serve(zc, tmp, "zcopy"),
        "uvicorn-quiet": _serve([*uv, "--no-access-log"], tmp, "uvicorn-quiet"),
        "zcopy-quiet": _serve([*zc, "--no-access-log"], tmp, "zcopy-quiet"),
    }


def test_access_lines_are_uvicorns(both: dict[str, tuple[str, str]]) -> None:
    uv_out, zc_out = both["uvicorn"][0], both["zcopy"][0]
    assert uv_out.splitlines() == [
        'INFO:     127.0.0.1:PORT - "GET /json?q=1&r=%22x%22 HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:PORT - "GET /teapot HTTP/1.1" 418 I\'m a Teapot',
    ], uv_out  # the reference itself, so that a change in uvicorn shows here first
    assert zc_out == uv_out


def test_websocket_and_lifecycle_lines_are_uvicorns(both: dict[str, tuple[str, str]]) -> None:
    uv_err, zc_err = both["uvicorn"][1], both["zcopy"][1]
    uv_lines = [line.replace("Uvicorn running on", "zcopy running on") for line in uv_err.splitlines()]
    zc_lines = zc_err.splitlines()
    # Every line of uvicorn's, in its order, is in zcopy's; what zcopy adds is its detail line and the
    # connection open/closed lines of uvicorn's `websockets` protocol.
    it = iter(zc_lines)
    missing = [line for line in uv_lines if line not in it]
    assert not missing, (missing, zc_err)
    extra = [line for line in zc_lines if line not in uv_lines]
    assert len(extra) == 3, extra
    assert "route=sendfile" in extra[0] and "http=httptools ws=wsproto" in extra[0], extra
    assert extra[1:] == ["INFO:     connection open", "INFO:     connection closed"], extra
    for line in (
        'INFO:     127.0.0.1:PORT - "WebSocket /ws" [accepted]',
        'INFO:     127.0.0.1:PORT - "WebSocket /ws-deny" 403',
        "INFO:     zcopy running on socket ('127.0.0.1', PORT) (Press CTRL+C to quit)",
        "INFO:     Finished server process [PID]",
    ):
        assert line in zc_lines, (line, zc_err)


def test_no_access_log_as_uvicorn(both: dict[str, tuple[str, str]]) -> None:
    assert both["uvicorn-quiet"][0] == "" and both["zcopy-quiet"][0] == ""
    # As uvicorn: the WebSocket lines are the server logger's, not access lines; they stay.
    assert '"WebSocket /ws" [accepted]' in both["uvicorn-quiet"][1]
    assert '"WebSocket /ws" [accepted]' in both["zcopy-quiet"][1]


def test_formatters_match_uvicorns_with_and_without_colours() -> None:
    import uvicorn.logging as ul

    from zcopy.serve import logconfig

    access_fmt = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
    for colours in (True, False):
        for status in (101, 200, 304, 404, 418, 503, 599):
            args = ("10.0.0.1:5", "POST", "/a?b", "1.1", status)
            record = logging.LogRecord("uvicorn.access", logging.INFO, "x", 1, '%s - "%s %s HTTP/%s" %d', args, None)
            theirs = ul.AccessFormatter(access_fmt, use_colors=colours).format(record)
            assert logconfig.AccessFormatter(access_fmt, use_colors=colours).format(record) == theirs
        for level in (5, 10, 20, 30, 40, 50):
            record = logging.LogRecord("uvicorn.error", level, "x", 1, "hello %s", ("there",), None)
            record.levelname = logging.getLevelName(level) if level != 5 else "TRACE"
            fmt = "%(levelprefix)s %(message)s"
            theirs = ul.DefaultFormatter(fmt, use_colors=colours).format(record)
            assert logconfig.DefaultFormatter(fmt, use_colors=colours).format(record) == theirs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}  # fmt: skip
    yield
    for n, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_a_uvicorn_config_works_without_uvicorn(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A --log-config naming uvicorn.logging's classes gets zcopy's equivalents where uvicorn is not installed."""
    import importlib.util

    import uvicorn.config

    from zcopy.serve import logconfig

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    path = tmp_path / "log.json"
    path.write_text(json.dumps(uvicorn.config.LOGGING_CONFIG))
    logconfig.configure(str(path), log_level="warning", use_colors=False)
    handler = logging.getLogger("uvicorn.access").handlers[0]
    assert type(handler.formatter) is logconfig.AccessFormatter
    assert logging.getLogger("uvicorn.error").getEffectiveLevel() == logging.WARNING


def test_ini_and_yaml_configs(restore_logging: None, tmp_path: Path) -> None:
    from zcopy.serve import logconfig

    ini = tmp_path / "log.ini"
    ini.write_text(
        "[loggers]\nkeys=root,access\n[handlers]\nkeys=h\n[formatters]\nkeys=f\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n"
        "[logger_access]\nlevel=INFO\nhandlers=h\nqualname=uvicorn.access\npropagate=0\n"
        f"[handler_h]\nclass=FileHandler\nformatter=f\nargs=({str(tmp_path / 'access.log')!r},)\n"
        "[formatter_f]\nformat=%(name)s|%(message)s\n"
    )
    logconfig.configure(str(ini))
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/", "1.1", 200)
    logging.getLogger("uvicorn.access").handlers[0].flush()
    assert (tmp_path / "access.log").read_text() == 'uvicorn.access|1.2.3.4:5 - "GET / HTTP/1.1" 200\n'
    yaml = tmp_path / "log.yaml"
    yaml.write_text("version: 1\ndisable_existing_loggers: false\nloggers:\n  uvicorn.error: {level: ERROR}\n")
    logconfig.configure(str(yaml))
    assert logging.getLogger("uvicorn.error").level == logging.ERROR
    with pytest.raises(logconfig.ConfigError, match="cannot apply --log-config"):
        logconfig.configure(str(tmp_path / "missing.json"))


def test_error_lines_name_client_and_port(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    err_path = tmp_path / "err"
    with open(err_path, "w") as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "zcopy", "serve", "--app", APP, "--app-dir", str(REPO), "--no-access-log",
             "--fd", str(listener.fileno())],
            stderr=err, cwd=REPO, pass_fds=(listener.fileno(),),
        )  # fmt: skip
    listener.close()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 500")
            client_port = s.getsockname()[1]
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = err_path.read_text()
    assert f"ERROR:    127.0.0.1:{client_port}: exception in ASGI application (GET /boom)" in text, text
    assert "RuntimeError: boom" in text


def test_direct_access_line_equals_the_formatters_and_yields_to_filters(restore_logging: None) -> None:
    """Under the default configuration the access line is written without a LogRecord; it must be the line the
    formatter makes, and give way to the logging path as soon as an app adds a filter (or colours are on)."""
    import io

    from zcopy.serve import logconfig
    from zcopy.serve.accesslog import AccessLog

    scope = {"client": ("10.1.2.3", 4567), "raw_path": b"/p", "query_string": b"a=1", "http_version": "1.1"}
    logconfig.configure(None, use_colors=False)
    handler = logconfig.default_access
    assert handler is not None
    out = io.StringIO()
    handler.setStream(out)  # type: ignore[arg-type]
    log = AccessLog(None, uvicorn=True)
    log.write("-", b"GET", b"/p?a=1", b"1.1", 418, 0, "memory", scope)
    direct = out.getvalue()
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "10.1.2.3:4567", "GET", "/p?a=1", "1.1", 418)
    assert direct == 'INFO:     10.1.2.3:4567 - "GET /p?a=1 HTTP/1.1" 418 I\'m a Teapot\n'
    assert out.getvalue() == direct * 2  # the formatter's line is the same
    access = logging.getLogger("uvicorn.access")
    access.addFilter(lambda record: record.args[-1] != 404)  # type: ignore[index]  # the usual health-check filter
    log.write("-", b"GET", b"/p?a=1", b"1.1", 404, 0, "memory", scope)
    log.write("-", b"GET", b"/p?a=1", b"1.1", 200, 0, "memory", scope)
    assert out.getvalue() == direct * 2 + 'INFO:     10.1.2.3:4567 - "GET /p?a=1 HTTP/1.1" 200 OK\n'
    access.filters.clear()
    handler.formatter.use_colors = True  # type: ignore[union-attr]
    log.write("-", b"GET", b"/p?a=1", b"1.1", 200, 0, "memory", scope)
    assert "\x1b[" in out.getvalue().splitlines()[-1]


def test_no_access_line_for_a_request_never_answered(tmp_path: Path) -> None:
    """uvicorn writes its access line when the response starts, so a request the client abandons before any
    answer (here: its body stalls past --body-timeout) has none; zcopy wrote `"POST ... HTTP/1.1" 0 `."""
    from .conftest import make_data, read_startup

    env = {**os.environ, "ZCOPY_TEST_DATA": str(make_data(tmp_path)), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(
        [sys.executable, "-m", "zcopy", "serve", "--app", "tests.serve.asgi.apps:app", "--app-dir", str(REPO),
         "--port", "0", "--body-timeout", "0.5", "--no-use-colors"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert p.stderr is not None
        line, before = read_startup(p.stderr)
        m = re.search(r"127\.0\.0\.1:(\d+)/", line)
        assert m, before
        port = int(m.group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"POST /raw/read-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            assert s.recv(100) == b""  # closed by the server past --body-timeout, with no answer
        assert _get(port, "/raw/nowhere") == 404  # a request answered: its line is written
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "no request body bytes" in err, err
    assert _normal(out).splitlines() == ['INFO:     127.0.0.1:PORT - "GET /raw/nowhere HTTP/1.1" 404 Not Found'], out
