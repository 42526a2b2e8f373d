"""Open-file cache: request path → open fds, stat, ETag and pre-built header bytes, like nginx open_file_cache.

An entry is trusted for ``valid`` seconds, then resolved again from scratch (a renamed, replaced or deleted
file is noticed within that interval). Entries are reference counted: a response holds its entry until its
last byte is sent, so an entry evicted or replaced meanwhile closes its fd only when the last user is done.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from zcopy.serve import conditional, mime


class FileEntry:
    """One open regular file with everything a 200/206/304 head needs, computed once."""

    __slots__ = (
        "content_type",
        "dead",
        "encoding",
        "etag",
        "fd",
        "fixed",
        "ino",
        "last_modified",
        "mtime",
        "name",
        "refs",
        "resident_until",
        "size",
    )

    def __init__(self, fd: int, st: os.stat_result, name: str, content_type: bytes, encoding: bytes, vary: bool):
        self.fd = fd
        self.size = st.st_size
        self.ino = st.st_ino
        self.mtime = int(st.st_mtime)
        self.name = name
        self.etag = conditional.make_etag(st.st_ino, st.st_size, st.st_mtime_ns)
        self.last_modified = conditional.http_date(self.mtime)
        self.content_type = content_type
        self.encoding = encoding
        self.refs = 0
        self.dead = False
        self.resident_until = 0.0  # conn.py: found in the page cache, trusted to be there until then
        # Headers shared by every full (200) response of this file; everything but Date/Connection.
        validators = self.validators(vary)
        self.fixed = b"Content-Type: %s\r\nContent-Length: %d\r\n%sAccept-Ranges: bytes\r\n%s" % (
            content_type,
            self.size,
            validators,
            b"Content-Encoding: %s\r\n" % encoding if encoding else b"",
        )

    def validators(self, vary: bool) -> bytes:
        return b"Last-Modified: %s\r\nETag: %s\r\n%s" % (
            self.last_modified,
            self.etag,
            b"Vary: Accept-Encoding\r\n" if vary else b"",
        )

    def acquire(self) -> FileEntry:
        self.refs += 1
        return self

    def release(self) -> None:
        self.refs -= 1
        if self.dead and self.refs <= 0:
            self._close()

    def retire(self) -> None:
        """Leave the cache: close now if unused, else when the last response using it finishes."""
        self.dead = True
        if self.refs <= 0:
            self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(slots=True)
class Group:
    """A path's file and its pre-compressed variants (``file.br``/``file.gz``), as one cache entry."""

    base: FileEntry
    br: FileEntry | None = None
    gz: FileEntry | None = None
    checked_at: float = 0.0
    vary: bool = False
    entries: list[FileEntry] = field(default_factory=list)

    def retire(self) -> None:
        for e in self.entries:
            e.retire()


def make_group(opened: list[tuple[int, os.stat_result, str] | None], base_name: bytes) -> Group:
    """Build a group from (fd, stat, name) of the base file and its .br/.gz variants (None when absent)."""
    base, br, gz = opened
    assert base is not None
    ctype = mime.content_type(base_name)
    vary = br is not None or gz is not None
    group = Group(FileEntry(*base, ctype, b"", vary), vary=vary)
    if br is not None:
        group.br = FileEntry(*br, ctype, b"br", vary)
    if gz is not None:
        group.gz = FileEntry(*gz, ctype, b"gzip", vary)
    group.entries = [e for e in (group.base, group.br, group.gz) if e is not None]
    return group


class FileCache:
    """LRU of Groups keyed by raw request path; ``max_entries`` paths, each trusted for ``valid`` seconds."""

    def __init__(self, *, max_entries: int = 256, valid: float = 1.0) -> None:
        self.max_entries = max_entries
        self.valid = valid
        self._groups: OrderedDict[bytes, Group] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes, now: float) -> Group | None:
        group = self._groups.get(key)
        if group is None or now - group.checked_at > self.valid:
            self.misses += 1
            return None
        self.hits += 1
        self._groups.move_to_end(key)
        return group

    def put(self, key: bytes, group: Group, now: float) -> None:
        if self.max_entries <= 0:
            return
        group.checked_at = now
        old = self._groups.pop(key, None)
        if old is not None:
            old.retire()
        self._groups[key] = group
        while len(self._groups) > self.max_entries:
            _, evicted = self._groups.popitem(last=False)
            evicted.retire()

    def clear(self) -> None:
        while self._groups:
            _, group = self._groups.popitem()
            group.retire()

    def __len__(self) -> int:
        return len(self._groups)


def monotonic() -> float:
    return time.monotonic()
