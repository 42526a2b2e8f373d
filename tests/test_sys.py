"""zcopy._sys holds only what is used: every constant and flag it defines is read somewhere else in zcopy."""

from __future__ import annotations

import re
from pathlib import Path

from zcopy import _sys


def test_every_name_in_sys_is_used_outside_it() -> None:
    src = Path(_sys.__file__).parent
    others = "\n".join(p.read_text() for p in src.rglob("*.py") if p.name != "_sys.py")
    names = [n for n in vars(_sys) if n.isupper()]
    unused = [n for n in names if not re.search(rf"\b{n}\b", others)]
    assert names and unused == []
