"""Process glue for `zcopy serve`: pick the loop, run one server with signal handling, or N forked workers.

Workers each own a listening socket on the same port with SO_REUSEPORT, so the kernel spreads connections
over them. SIGTERM (to the parent or a worker) → stop accepting, finish in-flight responses within the grace
period, exit 0. SIGHUP → reopen the access log (logrotate).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zcopy.serve.accesslog import AccessLog
from zcopy.serve.server import Server

# uvicorn's exit status when the app's startup fails (lifespan.startup.failed, or an exception with --lifespan on)
STARTUP_FAILED = 3


@dataclass
class Options:
    root: str | None = None
    app: Any = None  # an ASGI application (already imported, in the parent: errors show before any fork)
    app_label: str = ""  # MODULE:ATTR, for the start-up line
    uds: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    loop: str = "auto"  # auto | asyncio | uvloop
    grace: float = 10.0
    access_log: str | None = None
    json_log: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    quiet: bool = False
    server_kwargs: dict[str, Any] = field(default_factory=dict)


def loop_factory(name: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """("uvloop", uvloop.new_event_loop) when asked for or installed under "auto"; else plain asyncio."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def _serve(opts: Options, reuse_port: bool, loop_name: str) -> int:
    loop = asyncio.get_running_loop()
    log = AccessLog(opts.access_log, json_lines=opts.json_log) if opts.access_log else None
    tls = ssl_context(opts.tls_cert, opts.tls_key) if opts.tls_cert and opts.tls_key else None
    server = Server(
        opts.root,
        app=opts.app,
        uds=opts.uds,
        host=opts.host,
        port=opts.port,
        reuse_port=reuse_port,
        access_log=log,
        ssl=tls,
        **opts.server_kwargs,
    )
    if opts.app is not None:
        from zcopy.serve.asgi.lifespan import LifespanError

        try:
            await server.start()
        except LifespanError as exc:
            print(f"zcopy serve: {exc}", file=sys.stderr, flush=True)
            await server.shutdown(0)
            return STARTUP_FAILED
    else:
        await server.start()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if log is not None:
        loop.add_signal_handler(signal.SIGHUP, log.reopen)
    host, port = server.address
    if not opts.quiet:
        scheme = "https" if tls else "http"
        where = f"{scheme}+unix://{host}" if opts.uds else f"{scheme}://{host}:{port}/"
        what = f"app={opts.app_label or '?'}" if opts.app is not None else f"root={server.resolver.root}"  # type: ignore[union-attr]
        print(
            f"zcopy serve: {where} {what} route={server.route} loop={loop_name} pid={os.getpid()}",
            file=sys.stderr,
            flush=True,
        )
    await stop.wait()
    await server.shutdown(opts.grace)
    return 0


def serve_one(opts: Options, *, reuse_port: bool = False) -> int:
    """Run one server in this process until SIGTERM/SIGINT; returns the exit status."""
    loop_name, factory = loop_factory(opts.loop)
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(_serve(opts, reuse_port, loop_name))
    finally:
        loop.close()


def _spawn(opts: Options) -> int:
    pid = os.fork()
    if pid == 0:  # child: run a worker and never return into the parent's code
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            code = serve_one(opts, reuse_port=True)
        except BaseException as exc:
            print(f"zcopy serve: worker {os.getpid()} failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    return pid


def run(opts: Options) -> int:
    """`zcopy serve`: one process, or a parent supervising ``opts.workers`` SO_REUSEPORT workers."""
    if opts.workers <= 1:
        return serve_one(opts)
    if opts.uds is not None:
        # A unix socket has no SO_REUSEPORT balancing: the parent listens once and every worker accepts on it.
        from zcopy.serve.server import BACKLOG, listen_unix

        reserve = listen_unix(opts.uds, BACKLOG)
        opts.server_kwargs = {**opts.server_kwargs, "sock": reserve}
    else:
        # Reserve the port (and resolve port 0) in the parent; workers bind their own listeners beside it.
        family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
        reserve = socket.socket(family, socket.SOCK_STREAM)
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserve.bind((opts.host, opts.port))
        opts.port = reserve.getsockname()[1]
    stopping = False
    forwarded: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        forwarded.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    children = {_spawn(opts) for _ in range(opts.workers)}
    status = 0
    deadline = float("inf")
    while children:
        while forwarded:
            signum = forwarded.pop(0)
            for pid in children:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
            if stopping and deadline == float("inf"):
                deadline = time.monotonic() + opts.grace + 5.0  # workers' own grace, plus slack to exit
        try:
            pid, wstatus = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                for p in children:
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.05)
            continue
        children.discard(pid)
        code = os.waitstatus_to_exitcode(wstatus)
        if stopping:
            status = status or (code if code > 0 else 0)
        else:
            print(f"zcopy serve: worker {pid} exited ({code}); starting another", file=sys.stderr, flush=True)
            time.sleep(0.2)  # a worker that dies at once must not become a fork bomb
            children.add(_spawn(opts))
    reserve.close()
    return status
