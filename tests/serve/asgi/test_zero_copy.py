"""strace proves it: a Starlette FileResponse (http.response.pathsend) leaves by sendfile, no file byte by write."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import LOOPS
from .conftest import DATA_BIN, REPO, make_data, read_startup


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (.ci/run installs it)")
@pytest.mark.parametrize("loop", LOOPS)
def test_pathsend_body_goes_by_sendfile(tmp_path: Path, loop: str) -> None:
    data = make_data(tmp_path / "data")
    trace = tmp_path / "trace"
    p = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=sendto,sendfile,read,pread64,readv,write,writev,sendmsg",
         "-o", str(trace), sys.executable, "-m", "zcopy", "serve", "--app", "tests.serve.asgi.apps:app",
         "--app-dir", str(REPO), "--port", "0", "--loop", loop],
        stderr=subprocess.PIPE, text=True, env={"ZCOPY_TEST_DATA": str(data), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        assert p.stderr is not None
        line = read_startup(p.stderr)[0]
        m = re.search(r"http://([\d.]+):(\d+)/ .* pid=(\d+)", line)
        assert m, line
        r = httpx.get(f"http://{m.group(1)}:{m.group(2)}/file/data.bin", timeout=20)
        assert r.status_code == 200 and r.content == DATA_BIN
        subprocess.run(["kill", "-TERM", m.group(3)], check=True)  # the server, not strace
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
    time.sleep(0.1)
    text = trace.read_text()
    sendfiles = [int(n) for n in re.findall(r"sendfile\(\d+, \d+, .*\) = (\d+)", text)]
    assert sum(sendfiles) == len(DATA_BIN)
    assert re.search(r"sendto\(\d+, \"HTTP/1.1 200 OK.*MSG_MORE", text)  # the head shares a segment with the body
    # No read or write carried the file's bytes through user space (the file is a known byte pattern).
    assert "\\0\\1\\2\\3\\4\\5\\6\\7" not in text and "\\x00\\x01\\x02\\x03" not in text
