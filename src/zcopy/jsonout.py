"""The one rule for file names in every `--json` output: always valid JSON, and the exact bytes recoverable.

A POSIX file name is bytes. Python decodes the bytes that are not UTF-8 as lone surrogates (U+DC80..U+DCFF,
`os.fsdecode`'s surrogateescape), and `json.dumps` writes those as "\\udcff", which strict JSON parsers reject. So
every `--json` output of zcopy (cp, explain, replace, send, recv, tour, bench) goes through `dumps()`/`dump()`:

- a string that is valid Unicode is written as it is (almost every name);
- a string that holds bytes that are not UTF-8 is written with each such byte shown as U+FFFD, and when it is the
  value of key K in an object, that object also gets the key K + "_bytes": the exact bytes as lowercase hex. The
  key is there only when it is needed. `os.fsdecode(bytes.fromhex(obj[K + "_bytes"]))` gives back the name that
  Python's os functions take (or use the bytes as they are);
- object keys and strings inside a list (messages, never a name a script needs back) get the U+FFFD display only.
"""

from __future__ import annotations

import json
from typing import IO, Any

SUFFIX = "_bytes"


def _bytes_of(s: str) -> bytes | None:
    """The raw bytes of a string that is not valid Unicode (None when it is: then it is written unchanged)."""
    if s.isascii():
        return None
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return s.encode("utf-8", "surrogateescape")  # what os.fsencode does with a name from the OS
        except UnicodeEncodeError:
            return s.encode("utf-8", "surrogatepass")  # a lone surrogate from elsewhere: keep it recoverable
    return None


def _shown(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _clean_str(s: str) -> str:
    raw = _bytes_of(s)
    return s if raw is None else _shown(raw)


def clean(obj: Any) -> Any:
    """`obj` with the rule above applied all the way down (dicts, lists, tuples); other values as they are."""
    if isinstance(obj, str):
        return _clean_str(obj)
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            k = _clean_str(key) if isinstance(key, str) else key
            if isinstance(value, str) and (raw := _bytes_of(value)) is not None:
                out[k] = _shown(raw)
                out[f"{k}{SUFFIX}"] = raw.hex()
            else:
                out[k] = clean(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` under the rule: the text is valid JSON for every strict parser."""
    return json.dumps(clean(obj), **kwargs)


def dump(obj: Any, fp: IO[str], **kwargs: Any) -> None:
    fp.write(dumps(obj, **kwargs))
