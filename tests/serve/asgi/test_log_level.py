"""`zcopy serve --log-level` as uvicorn users mean it: a real server per level, what its stderr says and does not.

Below info there is no start-up line to learn the port from, so these servers listen on a unix socket in the test's
directory (bound before serving: a connection made as soon as it exists waits in the backlog).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from ..conftest import wait_for
from .conftest import REPO, make_data, response, stop_process

APP = "tests.serve.asgi.apps:app"


class UdsServer:
    """``zcopy serve`` for the test app (or the directory ``root``) on a unix socket; stderr kept for the end."""

    def __init__(self, tmp: Path, *args: str, root: Path | None = None, name: str = "s.sock") -> None:
        self.path = str(tmp / name)
        what = [str(root)] if root is not None else ["--app", APP, "--app-dir", str(REPO)]
        self.p = subprocess.Popen(
            [sys.executable, "-m", "zcopy", "serve", *what, "--uds", self.path, *args],
            stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "ZCOPY_TEST_DATA": str(make_data(tmp / "d"))},
        )  # fmt: skip
        self.lines: list[str] = []
        # The path appears at bind(), a moment before listen(): wait until a connect is accepted, not only for it.
        assert wait_for(lambda: self._listening() or self.p.poll() is not None, 30), "never listened"
        assert self.p.poll() is None, self.stop()

    def _listening(self) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(self.path)
            except OSError:
                return False
        return True

    def ready(self) -> None:
        """Answered once: signal handlers are in place (they are set before the first accept)."""
        self.request(b"GET /raw/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    def read_until(self, text: str, count: int = 1) -> None:
        """Read stderr lines until ``count`` of them contain ``text``."""
        assert self.p.stderr is not None
        while sum(text in line for line in self.lines) < count:
            line = self.p.stderr.readline()
            assert line, self.lines
            self.lines.append(line)

    def request(self, raw: bytes) -> tuple[int, bytes]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(self.path)
            s.sendall(raw)
            status, _, body, _ = response(s)
            return status, body

    def stop(self) -> tuple[int, str]:
        code, err = stop_process(self.p)
        return code, "".join(self.lines) + err


MALFORMED = b"GET /x HTTP/1.1\r\n\r\n"  # HTTP/1.1 without Host: 400
BOOM = b"GET /raw/boom-before HTTP/1.1\r\nHost: x\r\n\r\n"  # the app raises: 500 and a traceback
OK = b"GET /raw/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_error_keeps_app_tracebacks_and_drops_the_rest(tmp_path: Path) -> None:
    s = UdsServer(tmp_path, "--log-level", "error")
    try:
        assert s.request(MALFORMED)[0] == 400
        assert s.request(BOOM)[0] == 500
    finally:
        code, err = s.stop()
    assert code == 0, err
    assert "exception in ASGI application (GET /raw/boom-before)" in err and "Traceback" in err, err
    assert "RuntimeError: boom before the response started" in err
    assert "malformed request" not in err  # a warning
    assert "unix://" not in err and "Application startup complete" not in err and "Shutting down" not in err  # info


def test_warning_logs_malformed_requests_without_the_start_up_line(tmp_path: Path) -> None:
    s = UdsServer(tmp_path, "--log-level", "warning")
    try:
        assert s.request(MALFORMED)[0] == 400
    finally:
        code, err = s.stop()
    assert code == 0, err
    assert "malformed request (400); closing the connection" in err, err
    assert "unix://" not in err and "Application" not in err and "Finished" not in err, err


def test_info_shows_start_up_lifespan_and_shutdown_but_no_connections(tmp_path: Path) -> None:
    s = UdsServer(tmp_path)  # the default, info
    try:
        assert s.request(OK)[0] == 200
    finally:
        code, err = s.stop()
    assert code == 0, err
    # uvicorn's lines in uvicorn's order (its name replaced), and zcopy's own after "running on"; the access
    # line went to stdout, as uvicorn's does.
    pid = s.p.pid
    assert err.splitlines() == [
        f"INFO:     Started server process [{pid}]",
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
        f"INFO:     zcopy running on unix socket {s.path} (Press CTRL+C to quit)",
        f"INFO:     http+unix://{s.path} app={APP} http=httptools ws=wsproto route=sendfile loop=uvloop pid={pid}",
        "INFO:     Shutting down",
        "INFO:     Waiting for application shutdown.",
        "INFO:     Application shutdown complete.",
        f"INFO:     Finished server process [{pid}]",
    ], err


def test_quiet_drops_only_the_start_up_line(tmp_path: Path) -> None:
    s = UdsServer(tmp_path, "--quiet")
    s.ready()
    code, err = s.stop()
    assert code == 0 and "unix://" not in err and "Application startup complete." in err, err


def test_debug_says_connections_and_reaches_every_worker(tmp_path: Path) -> None:
    s = UdsServer(tmp_path, "--log-level", "debug", "--workers", "2")
    try:
        s.read_until("unix://", 2)  # both workers serving (info is above debug)
        assert s.request(OK)[0] == 200
    finally:
        code, err = s.stop()
    assert code == 0, err
    assert "DEBUG:    -: connection accepted (1 open)" in err and "-: connection closed (0 open)" in err, err
    assert "ASGI send" not in err  # trace only


def test_trace_shows_each_asgi_message(tmp_path: Path) -> None:
    s = UdsServer(tmp_path, "--log-level", "trace")
    try:
        assert s.request(b"POST /raw/body-messages HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc") == (
            200,
            b"3:0",
        )
    finally:
        code, err = s.stop()
    assert code == 0, err
    traced = [line.split("body-messages: ", 1)[1] for line in err.splitlines() if "body-messages: ASGI" in line]
    assert traced == [
        "ASGI receive http.request body=3 more_body=False",
        "ASGI send http.response.start status=200 headers=1",
        "ASGI send http.response.body body=3",
    ], err
    assert "connection accepted" in err  # and everything above trace


def test_static_server_levels(tmp_path: Path, site: Path) -> None:
    s = UdsServer(tmp_path, "--log-level", "debug", root=site)
    try:
        assert s.request(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200
    finally:
        code, err = s.stop()
    assert code == 0 and "root=" in err and "-: connection accepted" in err and "-: connection closed" in err, err
    s = UdsServer(tmp_path, "--log-level", "warning", root=site, name="s2.sock")
    s.ready()  # a 404 here: not worth a line
    code, err = s.stop()
    assert code == 0 and err == "", err


def test_an_unknown_level_is_refused() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "zcopy", "serve", "--app", APP, "--log-level", "loud"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "--log-level: invalid choice: 'loud'" in r.stderr, r.stderr
