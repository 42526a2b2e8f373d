"""The one rule for names in every `--json` output (zcopy.jsonout): valid JSON for a strict parser, the exact bytes
recoverable from K + "_bytes". Checked on the helper and on the commands that print file names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from zcopy import jsonout

ODD = os.fsdecode(b"caf\xe9 \xff.txt")  # Latin-1 bytes: not UTF-8, as a name from an old file system


def strict(text: str) -> Any:
    """json.loads, then what Python's parser lets through but strict ones (serde_json, Go, browsers) reject."""
    doc = json.loads(text)

    def walk(v: Any) -> None:
        if isinstance(v, str):
            v.encode("utf-8")  # a lone surrogate ("\udcff") raises here
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(doc)
    return doc


def name_of(obj: dict[str, Any], key: str) -> str:
    """How the rule says a script gets a name back."""
    raw = obj.get(key + jsonout.SUFFIX)
    return obj[key] if raw is None else os.fsdecode(bytes.fromhex(raw))


def test_valid_unicode_is_unchanged() -> None:
    doc = {"path": "ünïcode ☃.txt", "n": 3, "list": ["a", "☃"], "nested": {"x": None}}
    assert jsonout.dumps(doc) == json.dumps(doc)


def test_undecodable_bytes_become_valid_json_and_stay_recoverable() -> None:
    doc = {"src": ODD, "skipped": [{"route": "splice", "path": ODD}], "errors": [f"{ODD}: denied"], ODD: 1}
    out = strict(jsonout.dumps(doc))
    assert out["src"] == "caf\ufffd \ufffd.txt" and out["src_bytes"] == b"caf\xe9 \xff.txt".hex()
    assert name_of(out, "src") == ODD and os.fsencode(name_of(out, "src")) == b"caf\xe9 \xff.txt"
    assert name_of(out["skipped"][0], "path") == ODD and "route_bytes" not in out["skipped"][0]
    assert out["errors"] == ["caf\ufffd \ufffd.txt: denied"]  # messages: shown, not recoverable
    assert "caf\ufffd \ufffd.txt" in out  # keys: shown
    # A lone surrogate that did not come from the OS is still written as valid JSON, bytes kept.
    out = strict(jsonout.dumps({"s": "a\ud800"}))
    assert bytes.fromhex(out["s_bytes"]) == "a\ud800".encode("utf-8", "surrogatepass")


def zcopy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zcopy", *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          errors="surrogateescape")


def test_cp_json_with_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / ODD).write_bytes(b"x" * 1000)
    dst = os.fsdecode(b"\xfe copy")
    r = zcopy("cp", ODD, dst, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = strict(r.stdout)
    assert name_of(out, "src") == ODD and name_of(out, "dst") == dst
    assert (tmp_path / dst).read_bytes() == b"x" * 1000


def test_explain_and_replace_json_with_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / ODD).write_bytes(b"old text\n" * 100)
    r = zcopy("explain", ODD, "--to", "pipe", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert name_of(strict(r.stdout), "file") == ODD
    r = zcopy("replace", "old", "new", ODD, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert name_of(strict(r.stdout)["files"][0], "path") == ODD
    assert (tmp_path / ODD).read_bytes() == b"new text\n" * 100
