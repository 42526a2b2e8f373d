"""`zcopy serve --app` as a user runs it: app loading errors, factory, lifespan, SIGTERM, FastAPI, uvicorn's options."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from .conftest import DATA_BIN, REPO, AppServer, make_data, read_startup, response


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zcopy", "serve", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_app_loading_errors_exit_2_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import json\nraise ValueError('config missing')\n")
    (tmp_path / "plain.py").write_text("app = 42\ndef factory():\n    return None\n")
    cases = [
        (["--app", "nope_no_such_module:app"], "could not import module 'nope_no_such_module'"),
        (["--app", "plain:missing"], "attribute 'missing' not found in module 'plain'"),
        (["--app", "plain:app"], "not an ASGI application"),
        (["--app", "plain"], 'must look like "MODULE:ATTR"'),
        (["--app", "plain:factory", "--factory"], "not an ASGI application"),
        (["--app", "plain:app", str(tmp_path)], "a directory or --app, not both"),
        (["--app", "plain:app", "--list-dirs"], "--list-dirs serves a directory"),
        ([str(tmp_path), "--root-path", "/api"], "--root-path needs --app"),
        (["--app", "plain:app", "--root-path", "api/"], "--root-path must start with '/'"),
        (["--app", "plain:app", "--forwarded-allow-ips", "10.0.0.0/33"], "not an address or network"),
    ]
    for args, message in cases:
        r = run_cli(*args, "--app-dir", str(tmp_path), "--port", "0")
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
    # An exception inside the user's module: the user's own frames are shown (they need them), ours are not.
    r = run_cli("--app", "broken:app", "--app-dir", str(tmp_path), "--port", "0")
    assert r.returncode == 2 and "error while importing 'broken'" in r.stderr and "config missing" in r.stderr
    assert "broken.py" in r.stderr and "zcopy/serve" not in r.stderr


def test_factory(tmp_path: Path) -> None:
    s = AppServer("tests.serve.asgi.apps:make_app", make_data(tmp_path), "--factory")
    try:
        assert httpx.get(s.url + "/factory", timeout=10).text == "made by a factory"
    finally:
        assert s.stop()[0] == 0


def test_startup_failure_exits_3_with_the_reason(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "zcopy", "serve", "--app", "tests.serve.asgi.apps:app", "--port", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
        env={"PATH": "/usr/bin:/bin", "ZCOPY_TEST_FAIL_STARTUP": "1"},
    )  # fmt: skip
    assert r.returncode == 3, r.stderr
    assert "application startup failed" in r.stderr and "database unreachable" in r.stderr


def test_sigterm_finishes_in_flight_then_runs_shutdown(tmp_path: Path) -> None:
    done = tmp_path / "shutdown.txt"
    s = AppServer(
        "tests.serve.asgi.apps:app", make_data(tmp_path / "d"), "--grace", "20",
        env={"ZCOPY_TEST_SHUTDOWN_FILE": str(done)},
    )  # fmt: skip
    got: list[bytes] = []
    with s.connect() as c:
        c.sendall(b"GET /raw/sleep?1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        t = threading.Thread(target=lambda: got.append(response(c)[2]))
        t.start()
        while "sleeping" not in httpx.get(s.url + "/raw/events", timeout=10).text:
            pass  # until the request is inside the app (each poll is a full request: no busy spin)
        code, err = s.stop()  # SIGTERM while the request is inside the app
        t.join(10)
    assert code == 0, err
    assert got == [b"slept"]
    assert done.read_text() == "startup,sleeping,shutdown"  # lifespan shutdown ran after the in-flight request
    with pytest.raises(OSError):
        socket.create_connection(s.addr, timeout=2).close()  # and the port is closed


def test_fastapi_app(tmp_path: Path) -> None:
    s = AppServer("tests.serve.asgi.apps:fastapi_app", make_data(tmp_path))
    try:
        assert httpx.get(s.url + "/json", timeout=10).json() == {"framework": "fastapi"}
        r = httpx.post(s.url + "/items", json={"name": "a", "count": 21}, timeout=10)
        assert r.json() == {"name": "a", "double": 42}
        assert httpx.post(s.url + "/items", json={"name": "a"}, timeout=10).status_code == 422
        assert httpx.get(s.url + "/file/data.bin", timeout=10).content == DATA_BIN
    finally:
        assert s.stop()[0] == 0


def test_root_path_and_proxy_headers(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    s = AppServer(
        "tests.serve.asgi.apps:app", data, "--root-path", "/api", "--proxy-headers",
        "--forwarded-allow-ips", "127.0.0.1,10.9.0.0/16",
    )  # fmt: skip
    try:
        hdrs = {"X-Forwarded-For": "203.0.113.7, 10.9.1.1", "X-Forwarded-Proto": "https"}
        sc = httpx.get(s.url + "/scope", headers=hdrs, timeout=10).json()
        assert sc["root_path"] == "/api" and sc["path"] == "/api/scope" and sc["raw_path"] == "/api/scope"
        # 10.9.1.1 is a trusted proxy too: the client is the first untrusted hop from the right.
        assert sc["client"] == ["203.0.113.7", 0] and sc["scheme"] == "https"
    finally:
        code, err = s.stop()
    assert code == 0, err  # a graceful stop on SIGTERM
    s = AppServer("tests.serve.asgi.apps:app", data, "--proxy-headers", "--forwarded-allow-ips", "10.1.1.1")
    try:
        sc = httpx.get(s.url + "/scope", headers=hdrs, timeout=10).json()
        assert sc["client"][0] == "127.0.0.1" and sc["scheme"] == "http"  # we are not a trusted proxy: ignored
    finally:
        code, err = s.stop()
    assert code == 0, err  # a graceful stop on SIGTERM


def test_limit_concurrency_503(tmp_path: Path) -> None:
    s = AppServer("tests.serve.asgi.apps:app", make_data(tmp_path), "--limit-concurrency", "1")
    try:
        with s.connect() as c1:
            c1.sendall(b"GET /raw/sleep?3 HTTP/1.1\r\nHost: x\r\n\r\n")
            # c1's request is in the app (it sleeps 3 s); a second one is answered 503 without calling the app.
            for _ in range(100):
                r = httpx.get(s.url + "/state", timeout=10)
                if r.status_code == 503:
                    break
            assert r.status_code == 503
            assert response(c1)[2] == b"slept"
        assert httpx.get(s.url + "/state", timeout=10).status_code == 200
    finally:
        code, err = s.stop()
    assert code == 0, err  # a graceful stop on SIGTERM


def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    p = subprocess.Popen(
        [sys.executable, "-m", "zcopy", "serve", "--app", "tests.serve.asgi.apps:app", "--uds", path],
        stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "ZCOPY_TEST_DATA": str(make_data(tmp_path / "d"))},
    )  # fmt: skip
    try:
        assert p.stderr is not None
        assert "http+unix://" + path in read_startup(p.stderr)[0]
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, base_url="http://local") as c:
            sc = c.get("/scope", timeout=10).json()
            assert sc["client"] is None and sc["server"][0] == path
            assert c.get("/file/data.bin", timeout=10).content == DATA_BIN
    finally:
        p.terminate()
        assert p.wait(20) == 0


def test_access_log_names_the_route(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    s = AppServer("tests.serve.asgi.apps:app", make_data(tmp_path / "d"), "--access-log-file", str(log), "--json-log")
    try:
        httpx.get(s.url + "/file/data.bin", timeout=10)
        httpx.get(s.url + "/state", timeout=10)
    finally:
        code, err = s.stop()
    assert code == 0, err  # a graceful stop on SIGTERM
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["target"], x["status"], x["route"]) for x in lines] == [
        ("/file/data.bin", 200, "sendfile"),
        ("/state", 200, "memory"),
    ]
    assert lines[0]["bytes"] == len(DATA_BIN)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed (.ci/run installs it)")
def test_tls_pathsend_is_copied_and_says_so(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    log = tmp_path / "access.log"
    s = AppServer(
        "tests.serve.asgi.apps:app", make_data(tmp_path / "d"), "--tls-cert", str(cert), "--tls-key", str(key),
        "--access-log-file", str(log), "--json-log",
    )  # fmt: skip
    try:
        assert "route=readwrite" in s.line  # never claim zero-copy over TLS
        with httpx.Client(verify=False, base_url=f"https://{s.addr[0]}:{s.addr[1]}", timeout=10) as c:
            assert c.get("/file/data.bin").content == DATA_BIN
            sc = c.get("/scope").json()
            assert sc["scheme"] == "https" and sc["extensions"] == ["http.response.pathsend"]
            assert c.post("/echo", content=b"x" * 100_000).content == b"x" * 100_000
    finally:
        assert s.stop()[0] == 0
    routes = [json.loads(x)["route"] for x in log.read_text().splitlines()]
    assert routes[0] == "readwrite"


def test_library_run_and_workers(tmp_path: Path) -> None:
    """zcopy.serve.run(app, ...) as uvicorn.run is used, with two workers sharing the port."""
    script = tmp_path / "main.py"
    script.write_text(
        "import sys\n"
        "from zcopy.serve import run\n"
        "from tests.serve.asgi.apps import fastapi_app\n"
        "sys.exit(run(fastapi_app, port=0, workers=2, loop='asyncio', timeout_keep_alive=5))\n"
    )
    p = subprocess.Popen(
        [sys.executable, str(script)], stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "ZCOPY_TEST_DATA": str(make_data(tmp_path / "d"))},
    )  # fmt: skip
    try:
        assert p.stderr is not None
        pids = set()
        port = 0
        for _ in range(2):
            m = re.search(r"http://[\d.]+:(\d+)/ app=FastAPI .* pid=(\d+)", read_startup(p.stderr)[0])
            assert m
            port = int(m.group(1))
            pids.add(m.group(2))
        assert len(pids) == 2
        assert httpx.get(f"http://127.0.0.1:{port}/json", timeout=10).json() == {"framework": "fastapi"}
    finally:
        p.terminate()
        assert p.wait(30) == 0


def test_starlette_stream_to_a_vanished_client_is_not_an_app_error(tmp_path: Path) -> None:
    s = AppServer("tests.serve.asgi.apps:app", make_data(tmp_path))
    try:
        with s.connect() as c:
            c.sendall(b"GET /stream-forever HTTP/1.1\r\nHost: x\r\n\r\n")
            c.recv(65536)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        while "stream-forever-ended" not in httpx.get(s.url + "/raw/events", timeout=10).text:
            pass  # until Starlette's generator was closed (each poll is a full request)
        assert httpx.get(s.url + "/state", timeout=10).status_code == 200
    finally:
        code, err = s.stop()
    assert code == 0 and "Traceback" not in err and "exception in ASGI" not in err, err
