"""strace proves the body path: the head by send(MSG_MORE), the body by sendfile, no read/write of file data."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import LOOPS


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed (.ci/run installs it)")
@pytest.mark.parametrize("loop", LOOPS)
def test_body_goes_by_sendfile_with_msg_more_head(site: Path, tmp_path: Path, loop: str) -> None:
    trace = tmp_path / "trace"
    p = subprocess.Popen(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=sendto,sendfile,read,pread64,readv,write,writev,sendmsg",
            "-o",
            str(trace),
            sys.executable,
            "-m",
            "zcopy",
            "serve",
            str(site),
            "--port",
            "0",
            "--loop",
            loop,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stderr is not None
        line = p.stderr.readline()
        m = re.search(r"http://([\d.]+):(\d+)/ .* pid=(\d+)", line)
        assert m, line
        c = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=10)
        c.request("GET", "/data.bin")
        body = c.getresponse().read()
        assert body == bytes(range(256)) * 4096
        c.close()
        os.kill(int(m.group(3)), signal.SIGTERM)  # the server, not strace
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    time.sleep(0.1)
    text = trace.read_text()
    sendfiles = [int(n) for n in re.findall(r"sendfile\(\d+, \d+, .*\) = (\d+)", text)]
    assert sum(sendfiles) == 1 << 20
    assert re.search(r"sendto\(\d+, \"HTTP/1.1 200 OK.*MSG_MORE", text)
    # No syscall moved the file's bytes through user space: the largest read/write is far below 1 MiB and
    # none carries the file's byte pattern.
    assert "\\0\\1\\2\\3\\4\\5\\6\\7" not in text and "\\x00\\x01\\x02\\x03" not in text
