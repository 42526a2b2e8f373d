"""One request → one response: method, target, cache, conditionals, ranges, variants (no socket I/O here).

The connection hands in a parsed Request and gets back a Response: a list of parts (bytes and file slices)
plus what the connection must do afterwards (keep alive or close, release a cache entry, log a line).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field

from zcopy.parts import FileSlice, Part
from zcopy.serve import conditional, head, listing, ranges
from zcopy.serve.cache import FileCache, FileEntry, Group, make_group
from zcopy.serve.resolve import Resolver
from zcopy.serve.target import TargetError, parse_target, split_target

_STATUS_200 = head.status_line(200) + b"Server: " + head.SERVER + b"\r\nDate: "
_TEXT = b"text/plain; charset=utf-8"


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    http10: bool
    keep_alive: bool
    headers: dict[bytes, bytes] = field(default_factory=dict)  # only the fields we act on, lower-case names


@dataclass(slots=True)
class Response:
    status: int
    parts: list[Part]
    keep_alive: bool
    body_bytes: int
    entry: FileEntry | None = None
    route: str = "none"  # how the body travels: "sendfile", "memory" (small generated bodies), "none"


def _accepts(accept_encoding: bytes, coding: bytes) -> bool:
    """Does Accept-Encoding allow ``coding`` (q > 0, or via ``*``)? RFC 9110 §12.5.3."""
    star = False
    for item in accept_encoding.lower().split(b","):
        name, _, params = item.partition(b";")
        name = name.strip()
        q = 1.0
        for p in params.split(b";"):
            k, _, v = p.strip().partition(b"=")
            if k == b"q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if name == coding or (coding == b"gzip" and name == b"x-gzip"):
            return q > 0
        if name == b"*":
            star = q > 0
    return star


# The body of the 403 for a directory without index.html while listings are off.
NO_LISTING = b"This directory has no index.html, and directory listings are off (zcopy serve --list-dirs).\n"


class Handler:
    """Answers GET/HEAD for files under ``resolver``'s root, using ``cache`` for open files."""

    def __init__(
        self, resolver: Resolver, cache: FileCache, *, list_dirs: bool = False, precompressed: bool = True
    ) -> None:
        self.resolver = resolver
        self.cache = cache
        self.list_dirs = list_dirs
        self.precompressed = precompressed
        self._date_sec = -1
        self._date = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._date_sec:
            self._date_sec = now
            self._date = conditional.http_date(now)
        return self._date

    def error(
        self,
        status: int,
        req: Request | None,
        *,
        close: bool = False,
        extra: list[tuple[bytes, bytes]] | None = None,
        detail: bytes = b"",
    ) -> Response:
        body = head.error_body(status) + detail
        keep = req is not None and req.keep_alive and not close
        headers = [(b"Content-Type", _TEXT), (b"Content-Length", b"%d" % len(body)), *(extra or [])]
        h = head.build(status, self.date(), headers, keep_alive=keep, http10=req is not None and req.http10)
        send_body = req is None or req.method != b"HEAD"
        return Response(status, [h + body] if send_body else [h], keep, len(body) if send_body else 0, route="memory")

    def handle(self, req: Request) -> Response:
        raw = req.target
        if raw[:1] == b"/" and b"#" not in raw:
            raw_path = raw.partition(b"?")[0]
        else:
            try:
                raw_path = split_target(raw)[0]
            except TargetError as exc:
                return self.error(exc.status, req, close=exc.status == 400)
        if req.method not in (b"GET", b"HEAD"):
            return self.error(405, req, extra=[(b"Allow", head.ALLOW)])
        now = time.monotonic()
        group = self.cache.get(raw_path, now)
        if group is not None:
            return self._file(req, group)
        got = self._resolve(req, raw, raw_path, now)
        if isinstance(got, Response):
            return got
        resp = self._file(req, got)
        if self.cache.max_entries <= 0:
            got.retire()  # not cached: fds close now, or when this response releases its entry
        return resp

    def _resolve(self, req: Request, raw: bytes, raw_path: bytes, now: float) -> Group | Response:
        try:
            target = parse_target(raw, dotfiles=self.resolver.dotfiles)
        except TargetError as exc:
            return self.error(exc.status, req, close=exc.status == 400)
        opened = self.resolver.open(target.segments)
        if opened is None:
            return self.error(404, req)
        segments = target.segments
        if opened.is_dir:
            if not target.slash and segments:
                os.close(opened.fd)
                loc = target.url_path() + b"/" + (b"?" + target.query if target.query else b"")
                return self.error(301, req, extra=[(b"Location", loc)])
            try:
                index = self.resolver.open((*segments, b"index.html"))
            except OSError:  # out of descriptors (errnos.EXHAUSTED): the caller answers 503
                os.close(opened.fd)
                raise
            if index is None or index.is_dir:
                if index is not None:
                    os.close(index.fd)
                try:
                    if self.list_dirs:
                        return self._listing(req, target.url_path(), opened.fd)
                    return self.error(403, req, detail=NO_LISTING)  # nginx's answer, and how to change it
                finally:
                    os.close(opened.fd)
            os.close(opened.fd)
            opened = index
            segments = (*segments, b"index.html")
        elif target.slash:
            os.close(opened.fd)
            return self.error(404, req)  # "/file.txt/" names a directory that is not there
        name = os.fsdecode(b"/".join(segments))
        found: list[tuple[int, os.stat_result, str] | None] = [(opened.fd, opened.st, name), None, None]
        if self.precompressed:
            try:
                for i, suffix in ((1, b".br"), (2, b".gz")):
                    v = self.resolver.open((*segments[:-1], segments[-1] + suffix))
                    if v is None:
                        continue
                    if v.is_dir:
                        os.close(v.fd)
                        continue
                    found[i] = (v.fd, v.st, name + suffix.decode())
            except OSError:  # out of descriptors: nothing is cached (a variant must not silently go missing)
                for f in found:
                    if f is not None:
                        os.close(f[0])
                raise
        group = make_group(found, segments[-1])
        self.cache.put(raw_path, group, now)
        return group

    def _listing(self, req: Request, url_path: bytes, fd: int) -> Response:
        body = listing.render(url_path, self.resolver.list_dir(fd))
        headers = [(b"Content-Type", b"text/html; charset=utf-8"), (b"Content-Length", b"%d" % len(body))]
        h = head.build(200, self.date(), headers, keep_alive=req.keep_alive, http10=req.http10)
        is_head = req.method == b"HEAD"
        return Response(
            200, [h] if is_head else [h + body], req.keep_alive, 0 if is_head else len(body), route="memory"
        )

    def _file(self, req: Request, group: Group) -> Response:
        hdrs = req.headers
        entry = group.base
        if group.vary:
            ae = hdrs.get(b"accept-encoding")
            if ae:
                if group.br is not None and _accepts(ae, b"br"):
                    entry = group.br
                elif group.gz is not None and _accepts(ae, b"gzip"):
                    entry = group.gz
        if hdrs:
            status = conditional.precondition(
                etag=entry.etag,
                mtime=entry.mtime,
                if_match=hdrs.get(b"if-match"),
                if_unmodified_since=hdrs.get(b"if-unmodified-since"),
                if_none_match=hdrs.get(b"if-none-match"),
                if_modified_since=hdrs.get(b"if-modified-since"),
            )
            if status == 304:
                h = head.build(304, self.date(), [], keep_alive=req.keep_alive, http10=req.http10)
                # §15.4.5: a 304 carries the validators (and Vary) a 200 would have had, and no body.
                h = h[:-2] + entry.validators(group.vary) + b"\r\n"
                return Response(304, [h], req.keep_alive, 0)
            if status == 412:
                return self.error(412, req)
            rng = hdrs.get(b"range")
            if rng is not None:
                if_range = hdrs.get(b"if-range")
                if if_range is None or conditional.if_range_holds(if_range, etag=entry.etag, mtime=entry.mtime):
                    spans = ranges.ranges_for(rng, entry.size)
                    if spans is not None:
                        return self._partial(req, entry, group.vary, spans)
        h = b"".join(
            (
                _STATUS_200,
                self.date(),
                b"\r\n",
                entry.fixed,
                head.connection_header(req.keep_alive, req.http10),
                b"\r\n",
            )
        )
        if req.method == b"HEAD" or entry.size == 0:
            return Response(200, [h], req.keep_alive, 0)
        return Response(
            200,
            [h, FileSlice(entry.fd, 0, entry.size, entry.name)],
            req.keep_alive,
            entry.size,
            entry.acquire(),
            "sendfile",
        )

    def _partial(self, req: Request, entry: FileEntry, vary: bool, spans: list[ranges.Span]) -> Response:
        size = entry.size
        validators = entry.validators(vary)
        enc = b"Content-Encoding: %s\r\n" % entry.encoding if entry.encoding else b""
        if not spans:
            return self.error(416, req, extra=[(b"Content-Range", b"bytes */%d" % size)])
        is_head = req.method == b"HEAD"
        if len(spans) == 1:
            start, end = spans[0]
            headers = [
                (b"Content-Type", entry.content_type),
                (b"Content-Length", b"%d" % (end - start)),
                (b"Content-Range", ranges.content_range(spans[0], size)),
            ]
            h = head.build(206, self.date(), headers, keep_alive=req.keep_alive, http10=req.http10)
            h = h[:-2] + validators + enc + b"Accept-Ranges: bytes\r\n\r\n"
            if is_head:
                return Response(206, [h], req.keep_alive, 0)
            return Response(
                206,
                [h, FileSlice(entry.fd, start, end - start, entry.name)],
                req.keep_alive,
                end - start,
                entry.acquire(),
                "sendfile",
            )
        boundary = secrets.token_hex(16).encode()  # 128 random bits: will not occur in the file by chance
        part_heads, tail = ranges.multipart_parts(spans, size, entry.content_type, boundary)
        length = sum(len(p) for p in part_heads) + sum(e - s for s, e in spans) + len(tail)
        headers = [
            (b"Content-Type", b"multipart/byteranges; boundary=" + boundary),
            (b"Content-Length", b"%d" % length),
        ]
        h = head.build(206, self.date(), headers, keep_alive=req.keep_alive, http10=req.http10)
        h = h[:-2] + validators + enc + b"Accept-Ranges: bytes\r\n\r\n"
        if is_head:
            return Response(206, [h], req.keep_alive, 0)
        parts: list[Part] = [h]
        for ph, (s, e) in zip(part_heads, spans, strict=True):
            parts.append(ph)
            parts.append(FileSlice(entry.fd, s, e - s, entry.name))
        parts.append(tail)
        return Response(206, parts, req.keep_alive, length, entry.acquire(), "sendfile")
