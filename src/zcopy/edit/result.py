"""What `zcopy replace` did (or would do) to one file: the ReplaceResult model and its exit-code rule.

Pure data: the I/O glue (edit.editor) fills it, the CLI renders it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The two ways a file is edited.
IN_PLACE = "in-place mmap"  # same length: changed pages stored through a READ_WRITE mapping, then msync
REWRITE = "rewrite"  # temp file in the same directory: unchanged spans in-kernel, rename over the original

# Exit codes, grep-like: 0 something matched (and was changed, unless --dry-run), 1 nothing matched, 2 error.
EXIT_CHANGED = 0
EXIT_NO_MATCH = 1
EXIT_ERROR = 2


@dataclass
class ReplaceResult:
    """One file's outcome. ``matches`` counts replacements made (or that would be made with ``dry_run``).

    ``bytes_replaced``: source bytes covered by matches. ``user_bytes``: bytes that crossed user space on the
    way to the file (stored into the mapping, or written to the temp file). ``kernel_bytes``: bytes the
    rewrite moved in-kernel (``kernel_routes`` names the routes, e.g. copy_file_range). ``route``: IN_PLACE,
    REWRITE, or "" when nothing was written (with ``dry_run``: the route a real run would take).
    """

    path: str
    matches: int = 0
    bytes_replaced: int = 0
    size_before: int = 0
    size_after: int = 0
    route: str = ""
    dry_run: bool = False
    user_bytes: int = 0
    kernel_bytes: int = 0
    kernel_routes: list[str] = field(default_factory=list)
    forced_ranges: int = 0
    backup: str | None = None
    wall_s: float = 0.0

    @property
    def changed(self) -> bool:
        """True when the file's content was changed (never with dry_run)."""
        return not self.dry_run and bool(self.route)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["changed"] = self.changed
        return d


def exit_code(results: list[ReplaceResult], errors: int) -> int:
    """2 if any file failed, else 0 if any file had a match, else 1."""
    if errors:
        return EXIT_ERROR
    return EXIT_CHANGED if any(r.matches for r in results) else EXIT_NO_MATCH
