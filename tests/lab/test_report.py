"""The report: real PNGs from real bench JSON, and the HTML page that shows them."""

from __future__ import annotations

from pathlib import Path

import pytest

from zcopy.lab.bench import BenchOptions, run_bench
from zcopy.lab.report import html_page, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the report needs the optional matplotlib extra (zcopy[lab])")
    doc = run_bench(BenchOptions(scenarios=("file-socket",), sizes=[4096, 16384], repeats=2,
                                 sample_bytes=64 * 1024, workdir=tmp_path))  # fmt: skip
    paths = write_report(doc, tmp_path / "report")
    names = {p.name for p in paths}
    assert names == {"bench.json", "overview.png", "file-socket.png", "index.html"}
    for p in paths:
        if p.suffix == ".png":
            data = p.read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<img src='file-socket.png'" in page
    assert "sendfile" in page and "CPU s/GiB" in page


def test_html_escapes() -> None:
    doc = {"date": "<now>", "machine": {"kernel": "k&", "python": "3", "cpus": 2}, "command": "zcopy <b>",
           "loadavg": [1.234567, 0.5, 0.25],
           "repeats": 1, "scenarios": [], "results": [], "notes": ["a<b"]}  # fmt: skip
    page = html_page(doc, [])
    assert "1.23 0.50 0.25" in page
    assert "&lt;now&gt;" in page and "k&amp;" in page and "a&lt;b" in page and "<b>" not in page


# Runs in a fresh interpreter where `import matplotlib` fails, as on an install without the [lab] extra.
_NO_MPL = """
import sys
sys.modules["matplotlib"] = None  # makes `import matplotlib` raise ImportError and find_spec return None
from zcopy.cli import main
rc_table = main(["bench", "--scenario", "file-socket", "--route", "sendfile", "--min-size", "4K", "--max-size",
                 "4K", "--repeats", "1", "--sample-bytes", "16K", "--dir", sys.argv[1]])
rc_report = main(["bench", "--scenario", "file-socket", "--min-size", "4K", "--max-size", "4K", "--repeats", "1",
                  "--dir", sys.argv[1], "--report", sys.argv[1] + "/r"])
print("RESULT", rc_table, rc_report)
"""


def test_bench_without_matplotlib_prints_tables_and_refuses_report_cleanly(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _NO_MPL, str(tmp_path)], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert "RESULT 0 2" in out.stdout, out.stderr
    assert "MiB/s    sendfile" in out.stdout
    assert "needs matplotlib: pip install 'zcopy[lab]'" in out.stderr
    assert not (tmp_path / "r").exists()
