"""Content-Type by file extension: a fixed table, so answers do not depend on the host's /etc/mime.types (pure)."""

from __future__ import annotations

DEFAULT = b"application/octet-stream"

# Text types carry charset=utf-8: what nginx/aiohttp users expect from a static server for source-like files.
_TABLE: dict[bytes, bytes] = {
    b"html": b"text/html; charset=utf-8",
    b"htm": b"text/html; charset=utf-8",
    b"css": b"text/css; charset=utf-8",
    b"js": b"text/javascript; charset=utf-8",
    b"mjs": b"text/javascript; charset=utf-8",
    b"json": b"application/json",
    b"txt": b"text/plain; charset=utf-8",
    b"md": b"text/markdown; charset=utf-8",
    b"csv": b"text/csv; charset=utf-8",
    b"xml": b"application/xml",
    b"svg": b"image/svg+xml",
    b"png": b"image/png",
    b"jpg": b"image/jpeg",
    b"jpeg": b"image/jpeg",
    b"gif": b"image/gif",
    b"webp": b"image/webp",
    b"avif": b"image/avif",
    b"ico": b"image/vnd.microsoft.icon",
    b"bmp": b"image/bmp",
    b"woff": b"font/woff",
    b"woff2": b"font/woff2",
    b"ttf": b"font/ttf",
    b"otf": b"font/otf",
    b"mp4": b"video/mp4",
    b"webm": b"video/webm",
    b"mkv": b"video/x-matroska",
    b"mov": b"video/quicktime",
    b"mp3": b"audio/mpeg",
    b"ogg": b"audio/ogg",
    b"wav": b"audio/wav",
    b"flac": b"audio/flac",
    b"pdf": b"application/pdf",
    b"zip": b"application/zip",
    b"gz": b"application/gzip",
    b"tgz": b"application/gzip",
    b"tar": b"application/x-tar",
    b"bz2": b"application/x-bzip2",
    b"xz": b"application/x-xz",
    b"zst": b"application/zstd",
    b"7z": b"application/x-7z-compressed",
    b"wasm": b"application/wasm",
    b"py": b"text/x-python; charset=utf-8",
    b"sh": b"text/x-shellscript",
    b"iso": b"application/octet-stream",
    b"bin": b"application/octet-stream",
}


def content_type(name: bytes) -> bytes:
    """The media type for a file name (last extension, case-insensitive), DEFAULT when unknown."""
    dot = name.rfind(b".")
    if dot <= 0:
        return DEFAULT
    return _TABLE.get(name[dot + 1 :].lower(), DEFAULT)
