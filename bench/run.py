"""`make bench`: run every benchmark script in bench/ one after another and rewrite docs/benchmarks.md.

Each script is run in its own process with `--out FILE` and writes one markdown section. Extra arguments (e.g.
`--quick`) are passed to every script. `ZCOPY_BENCH_ONLY=core,serve` limits which ones run.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# In this order; missing ones are skipped.
SCRIPTS = ["core", "direct", "tree", "lab", "transfer", "relay", "replace", "serve", "asgi", "cold", "attack"]

HEADER = """# Benchmarks

Written by `make bench` (`python bench/run.py`): every number below was measured by the command shown with it, on
the machine named with it. These machines are noisy, so contenders run side by side in the same run, their order
shuffled per round, and medians are quoted with min–max. Benchmarks are never timed assertions in tests.

The rule for numbers in these docs (this file, the README and docs/*.md): a number either sits in a generated
section below (between `<!-- bench:NAME -->` markers, written whole by `bench/NAME.py`; nothing is written into a
section by hand, since the next `make bench` replaces it), or it names the command in this repository, the date
and the machine that produced it. Where a number changed, the newest run wins and the old text goes.
"""


def _split(text: str) -> dict[str, str]:
    """Sections of an existing docs/benchmarks.md, by script name (between <!-- bench:NAME --> markers)."""
    found: dict[str, str] = {}
    for name in SCRIPTS:
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        if start in text and end in text:
            found[name] = text[text.index(start) + len(start) : text.index(end)].strip() + "\n"
    return found


def main(argv: list[str]) -> int:
    only = {s for s in os.environ.get("ZCOPY_BENCH_ONLY", "").split(",") if s}
    dest = os.path.join(ROOT, "docs", "benchmarks.md")
    # With ZCOPY_BENCH_ONLY, the other scripts' sections are kept from the current file.
    sections: dict[str, str] = {}
    if only and os.path.exists(dest):
        with open(dest) as f:
            sections = _split(f.read())
    failed: list[str] = []
    for name in SCRIPTS:
        path = os.path.join(HERE, f"{name}.py")
        if not os.path.exists(path) or (only and name not in only):
            continue
        with tempfile.NamedTemporaryFile("r", suffix=".md") as out:
            print(f"== bench/{name}.py {' '.join(argv)}", flush=True)
            rc = subprocess.call([sys.executable, path, *argv, "--out", out.name], cwd=ROOT)
            with open(out.name) as f:
                text = f.read()
        if rc != 0 or not text.strip():
            failed.append(name)
            text = f"## bench/{name}.py\n\nFailed on {datetime.date.today()} (exit {rc}); see its output.\n"
        sections[name] = text.strip() + "\n"
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    body = "\n".join(f"<!-- bench:{n} -->\n{sections[n]}<!-- /bench:{n} -->\n" for n in SCRIPTS if n in sections)
    with open(dest, "w") as f:
        f.write(HEADER + "\n" + body)
    print(f"wrote {dest}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
