"""uvicorn's --interface wsgi: a WSGI application (PEP 3333) served through the ASGI bridge, in threads.

The app runs in a thread pool (WSGI is blocking); the request body is spooled (memory up to SPOOL bytes, then a
temporary file) before the app is called; each chunk of its response iterable is sent from the event loop.
``wsgi.file_wrapper`` is zcopy's: when the app returns one over a regular file (Flask's ``send_file``, Django's
``FileResponse``), the body leaves by the ASGI ``http.response.zerocopysend`` extension, that is by sendfile(2),
without being read into Python at all; over anything else it is read in blocks, as PEP 3333's default does.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

SPOOL = 1 << 20  # request bodies above this go to a temporary file
THREADS = 40  # a2wsgi's and uvicorn's WSGIMiddleware default worker count
BLOCK = 64 << 10


class FileWrapper:
    """PEP 3333's wsgi.file_wrapper: iterable in blocks, and recognised by the server for sendfile."""

    def __init__(self, filelike: IO[bytes], blksize: int = BLOCK) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        while True:
            block = self.filelike.read(self.blksize)
            if not block:
                return
            yield block

    def regular_fd(self) -> int | None:
        """The descriptor to sendfile from, when the file-like is a real regular file; else None."""
        try:
            fd = self.filelike.fileno()
            return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None


def environ(scope: dict[str, Any], body: IO[bytes], errors: IO[str]) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP scope (paths as PEP 3333's latin-1 "bytes as str")."""
    root = scope.get("root_path", "")
    path: str = scope["path"]
    if root and path.startswith(root):
        path = path[len(root) :]
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    env: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "0",
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    if client:
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = str(client[0]), str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name
        env[key] = f"{env[key]},{value}" if key in env else value
    return env


class WSGIApp:
    """An ASGI 3 application that runs ``app`` (WSGI) for each HTTP request; WebSockets are refused (403)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], threads: int = THREADS) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zcopy-wsgi")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close"})
            return
        body = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 - closed below
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body.write(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body.seek(0)
            await self._respond(scope, body, send)
        finally:
            body.close()

    async def _respond(self, scope: dict[str, Any], body: IO[bytes], send: Any) -> None:
        loop = asyncio.get_running_loop()
        started: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            if exc_info is not None and started.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            started["status"] = int(status.split(" ", 1)[0])
            started["headers"] = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            return lambda data: call(send({"type": "http.response.body", "body": data, "more_body": True}))

        def call(coro: Any) -> None:
            asyncio.run_coroutine_threadsafe(coro, loop).result()

        def head() -> None:
            if not started.get("sent"):
                started["sent"] = True
                call(send({"type": "http.response.start", "status": started["status"], "headers": started["headers"]}))

        def run() -> None:
            result: Any = self.app(environ(scope, body, sys.stderr), start_response)
            try:
                fd = result.regular_fd() if isinstance(result, FileWrapper) else None
                if fd is not None and "http.response.zerocopysend" in (scope.get("extensions") or {}):
                    head()
                    call(send({"type": "http.response.zerocopysend", "file": result.filelike, "more_body": False}))
                    return
                for chunk in result:
                    if chunk:
                        head()
                        call(send({"type": "http.response.body", "body": chunk, "more_body": True}))
                head()
                call(send({"type": "http.response.body", "body": b"", "more_body": False}))
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

        await loop.run_in_executor(self.pool, run)
