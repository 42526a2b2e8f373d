"""The smuggling-vector suite (tests/serve/smuggling.py) against both servers, plain and under TLS: every
ambiguous or broken framing gets 400 and a close, HTTP/1.0 with Transfer-Encoding closes after its answer,
an upgrade that is not one is answered in step, and no hidden request is ever answered."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .asgi.conftest import REPO, STARTUP, make_data, read_startup, stop_process
from .smuggling import VECTORS, check, read_all
from .tlsfiles import make_cert


class Serving:
    """``zcopy serve ARGS --port 0`` in a subprocess; ``talk(raw)`` sends raw bytes, reads until close."""

    def __init__(self, args: list[str], data: Path, tls: bool) -> None:
        self.tls: ssl.SSLContext | None = None
        if tls:
            cert, key = make_cert(data)
            args = [*args, "--tls-cert", str(cert), "--tls-key", str(key)]
            self.tls = ssl.create_default_context(cafile=str(cert))
            self.tls.check_hostname = False
        env = {**os.environ, "ZCOPY_TEST_DATA": str(data)}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "zcopy", "serve", *args, "--port", "0"], stderr=subprocess.PIPE, text=True,
            env=env, cwd=REPO,
        )  # fmt: skip
        assert self.p.stderr is not None
        line, before = read_startup(self.p.stderr)
        m = STARTUP.search(line)
        assert m, f"server did not start: {''.join(before)}{line}"
        self.addr = (m.group(1), int(m.group(2)))

    def talk(self, raw: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
        s = socket.create_connection(self.addr, timeout=timeout)
        if self.tls is not None:
            s = self.tls.wrap_socket(s, server_hostname="localhost")
        with s:
            s.sendall(raw)  # no half-close: the server must close by itself where a vector asks for it
            return read_all(s, timeout)

    def stop(self) -> None:
        stop_process(self.p)


@pytest.fixture(scope="module", params=["static", "asgi", "static-tls", "asgi-tls"])
def serving(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Serving, bytes]]:
    data = make_data(tmp_path_factory.mktemp("smuggle"))
    mode = str(request.param)
    if mode.startswith("static"):
        args, path = [str(data)], b"/small.txt"
    else:
        args, path = ["--app", "tests.serve.asgi.apps:app", "--app-dir", str(REPO)], b"/echo"
    s = Serving(args, data, tls=mode.endswith("tls"))
    yield s, path
    s.stop()


def test_every_vector(serving: tuple[Serving, bytes]) -> None:
    server, path = serving
    wrong = []
    for v in VECTORS:
        data, closed = server.talk(v.raw.replace(b"/PATH", path))
        wrong.append(check(v, data, closed))
    assert not any(wrong), [w for w in wrong if w]
