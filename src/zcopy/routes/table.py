"""The selection table: for each (source kind, target kind), the routes to try, best first. Pure data.

Kinds: "file" (regular file), "socket", "pipe", "other" (devices, ttys...). readwrite ends every list: it never
gives up. The order follows CPU per byte measured here (bench/core.py): no copy < in-kernel copy < one user copy.
"""

from __future__ import annotations

ROUTES = ("sendfile", "splice", "copy_file_range", "mmap", "direct", "readwrite")

# `direct` (O_DIRECT) is in no list below: it wins only for data not in the page cache, which the pair of kinds
# cannot tell. It runs when forced (route="direct"), preferred by a selection that probed the page cache
# (zcopy.copy and zcopy cp: fastcopy.select), or on a channel opened with direct=True.

ORDER: dict[tuple[str, str], tuple[str, ...]] = {
    ("file", "socket"): ("sendfile", "splice", "mmap", "readwrite"),
    ("file", "file"): ("copy_file_range", "sendfile", "readwrite"),
    ("file", "pipe"): ("splice", "sendfile", "readwrite"),
    ("file", "other"): ("sendfile", "readwrite"),
    ("socket", "file"): ("splice", "readwrite"),
    ("socket", "socket"): ("splice", "readwrite"),
    ("socket", "pipe"): ("splice", "readwrite"),
    ("pipe", "file"): ("splice", "readwrite"),
    ("pipe", "socket"): ("splice", "readwrite"),
    ("pipe", "pipe"): ("splice", "readwrite"),
}
FALLBACK_ONLY: tuple[str, ...] = ("readwrite",)


def order(src_kind: str, dst_kind: str) -> tuple[str, ...]:
    return ORDER.get((src_kind, dst_kind), FALLBACK_ONLY)
