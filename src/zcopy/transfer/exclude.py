"""`zcopy send --exclude PATTERN`: rsync's rules for simple glob patterns, matched against each name as it is sent
(`tree/sub/a.txt` for `zcopy send tree`). Pure: no file system access.

- `*` matches within one path component, `**` across components, `?` one character but `/`, `[...]` a class
  (`[!...]` negated).
- A pattern without `/` matches the last component (`*.tmp`, `.git`); one with `/` inside matches the end of
  the path on a component boundary (`build/*.o`); one starting with `/` is anchored at the top of the transfer
  (`/tree/cache`).
- A pattern ending in `/` matches directories only (`cache/`).
- An excluded directory is not walked: nothing below it is sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence


def _translate(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 2 if glob.startswith(("[!", "[^"), i) else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = end + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class Pattern:
    """One --exclude pattern, compiled."""

    def __init__(self, text: str) -> None:
        if not text or text in ("/", "//"):
            raise ValueError(f"--exclude {text!r}: an empty pattern matches nothing")
        self.text = text
        self.dirs_only = text.endswith("/")
        body = text.rstrip("/")
        anchored = body.startswith("/")
        body = body.lstrip("/")
        regex = _translate(body)
        self._re = re.compile(("" if anchored else "(?:.*/)?") + regex, re.DOTALL)

    def matches(self, name: str, is_dir: bool) -> bool:
        if self.dirs_only and not is_dir:
            return False
        return self._re.fullmatch(name) is not None


class Excluder:
    """All --exclude patterns of a send: `excluded(name, is_dir)` for each name as it would be sent."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns = [Pattern(t) for t in patterns]

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, name: bytes, is_dir: bool) -> bool:
        text = os.fsdecode(name)
        return any(p.matches(text, is_dir) for p in self.patterns)


__all__ = ["Excluder", "Pattern"]
