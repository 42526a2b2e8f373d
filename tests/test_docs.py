"""The docs stand on their own: every file they link or name in backticks is in this repository, and
docs/benchmarks.md states the rule for numbers that bench/run.py writes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PLACEHOLDER = re.compile(r"(^|/)[A-Z][A-Z-]*(/|\.)")  # DIR/index.html, bench/NAME.py: a pattern, not a file
NAMED = re.compile(r"`((?:\.\./)?[\w.-]+(?:/[\w.-]+)+\.(?:py|md|txt|json|toml|png|html|svg))`")


def test_every_linked_or_named_file_is_in_the_repo() -> None:
    missing = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for target in LINK.findall(text) + NAMED.findall(text):
            if "://" in target or target.startswith("mailto:") or PLACEHOLDER.search(target):
                continue
            if not any((base / target).exists() for base in (doc.parent, ROOT, ROOT / "src" / "zcopy")):
                missing.append(f"{doc.relative_to(ROOT)}: {target}")
    assert missing == []


def test_benchmarks_md_opens_with_the_header_and_rule_bench_run_writes() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run
    finally:
        sys.path.remove(str(ROOT / "bench"))
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert text.startswith(run.HEADER) and "names the command in this repository, the date" in run.HEADER
