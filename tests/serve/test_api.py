"""The library API (Server(root), start, serve_forever, async with) and its accounting through zcopy.observe."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from zcopy import observe
from zcopy.serve import Server
from zcopy.serve.workers import loop_factory


async def fetch(addr: tuple[str, int], request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(request)
    data = await reader.read()
    writer.close()
    return data


def run(loop_name: str, coro: object) -> object:
    _, factory = loop_factory(loop_name)
    loop = factory()
    try:
        return loop.run_until_complete(coro)  # type: ignore[arg-type]
    finally:
        loop.close()


def test_async_with_and_observe(site: Path, loop_name: str) -> None:
    async def main() -> bytes:
        async with Server(site, port=0) as server:
            return await fetch(server.address, b"GET /data.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    with observe() as obs:
        out = run(loop_name, main())
    assert isinstance(out, bytes) and out.endswith(bytes(range(256)) * 4096)
    ops = [op for op in obs.operations if op.op == "serve.response"]
    assert ops and ops[-1].route == "sendfile" and ops[-1].nbytes == 1 << 20
    assert ops[-1].syscalls.get("sendfile", 0) >= 1 and ops[-1].user_bytes == len(out) - (1 << 20)


def test_serve_forever_until_close(site: Path, loop_name: str) -> None:
    async def main() -> bytes:
        server = Server(site, port=0)
        await server.start()
        forever = asyncio.ensure_future(server.serve_forever())
        out = await fetch(server.address, b"GET /hello.txt HTTP/1.0\r\n\r\n")
        server.close()
        await asyncio.wait_for(forever, 5)
        await server.wait_closed(1)
        return out

    assert str(run(loop_name, main())).endswith("hello world\\n'")


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        Server(tmp_path / "missing")


def test_file_refusing_sendfile_falls_back_and_says_so(
    site: Path, loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems answer sendfile with EINVAL: the body still arrives by the core's next route, named."""
    import errno
    import os

    def refuse(*args: object) -> int:
        raise OSError(errno.EINVAL, "sendfile refused (test)")

    monkeypatch.setattr(os, "sendfile", refuse)

    async def main() -> bytes:
        async with Server(site, port=0) as server:
            return await fetch(server.address, b"GET /data.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    with observe() as obs:
        out = run(loop_name, main())
    assert isinstance(out, bytes) and out.startswith(b"HTTP/1.1 200") and out.endswith(bytes(range(256)) * 4096)
    ops = [op for op in obs.operations if op.op == "serve.response"]
    op = ops[-1]
    # The route table's next choice for file → socket; a regular file always splices.
    assert op.route == "splice" and op.nbytes == 1 << 20
    assert op.user_bytes == len(out) - (1 << 20)  # the head only: still no user-space copy of the body
