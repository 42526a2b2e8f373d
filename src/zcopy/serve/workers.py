"""Process glue for `zcopy serve`: pick the loop, run one server with signal handling, or N forked workers.

Workers each own a listening socket on the same port with SO_REUSEPORT, so the kernel spreads connections
over them. SIGTERM (to the parent or a worker) → stop accepting, finish in-flight responses within the grace
period, exit 0. SIGHUP → reopen the access log (logrotate).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zcopy.serve import logconfig, logs
from zcopy.serve.accesslog import AccessLog
from zcopy.serve.prepare import Prepared, prepare
from zcopy.serve.server import Server, say

# uvicorn's exit status when the app's startup fails (lifespan.startup.failed, or an exception with --lifespan on)
STARTUP_FAILED = 3


@dataclass
class Options:
    root: str | None = None
    app: Any = None  # an ASGI application (already imported, in the parent: errors show before any fork)
    app_label: str = ""  # MODULE:ATTR, for the start-up line
    uds: str | None = None
    fd: int | None = None  # an inherited listening socket (uvicorn's --fd: systemd, a supervisor)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    loop: str = "auto"  # auto | asyncio | uvloop
    grace: float = 10.0
    access_log: str | None = None  # a file for Common Log Format (or JSON) lines, "-" = stderr
    json_log: bool = False
    uvicorn_access: bool = False  # uvicorn's access line per request (the `uvicorn.access` logger)
    tls_cert: str | None = None
    tls_key: str | None = None
    ssl_context: ssl.SSLContext | None = None  # made from uvicorn's --ssl-* options (settings.py); wins over tls_*
    quiet: bool = False  # no start-up line (whatever log_level says about the other info lines)
    # logs.py: uvicorn's names; messages below it are not written. None: the `uvicorn.error` logger's own level
    # (a --log-config decides it).
    log_level: str | int | None = "info"
    limit_max_requests: int | None = None  # a worker stops after this many requests (+ up to the jitter)
    limit_max_requests_jitter: int = 0
    backlog: int = 1024  # listen(2) queue
    exit_slack: float = 5.0  # after SIGTERM, workers get grace + this to exit before SIGKILL (teardown, flush)
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


def threshold(opts: Options) -> int:
    return logconfig.threshold() if opts.log_level is None else logs.level(opts.log_level)


async def _serve(opts: Options, prepared: Prepared, slot: int, loop_name: str) -> int:
    loop = asyncio.get_running_loop()
    log = None
    if opts.access_log or opts.uvicorn_access:
        log = AccessLog(opts.access_log, json_lines=opts.json_log, uvicorn=opts.uvicorn_access)
    tls = prepared.tls
    stop = asyncio.Event()
    app = opts.app
    if app is not None and opts.limit_max_requests is not None:
        from zcopy.serve.asgi.wrap import counted

        app = counted(app, _request_limit(opts, stop))
    level = threshold(opts)
    if app is not None and level <= logs.STARTED:
        say(f"Started server process [{os.getpid()}]")
    server = Server(
        opts.root,
        app=app,
        uds=opts.uds,
        host=opts.host,
        port=opts.port,
        sock=prepared.socket(slot),
        access_log=log,
        ssl=tls,
        log_level=level,
        **opts.server_kwargs,
    )
    if opts.app is not None:
        from zcopy.serve.asgi.lifespan import LifespanError

        try:
            await server.start()
        except LifespanError as exc:
            server.log(logs.STARTUP_FAILED, str(exc))
            await server.shutdown(0)
            return STARTUP_FAILED
    else:
        await server.start()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # SIGHUP reopens the access log (logrotate); without one it is ignored, never the default "terminate".
    loop.add_signal_handler(signal.SIGHUP, log.reopen if log is not None else lambda: None)
    host, port = server.address
    if not opts.quiet and server.log_level <= logs.STARTED:
        scheme = "https" if tls else "http"
        if opts.app is not None:
            say(running(opts, scheme, host, port))
        where = f"{scheme}+unix://{host}" if opts.uds else f"{scheme}://{host}:{port}/"
        if opts.app is not None:
            what = f"app={opts.app_label or '?'}"
            extra = f" http={settings_parser()} ws={_ws_name(opts)}"
        else:
            what, extra = f"root={server.resolver.root}", ""  # type: ignore[union-attr]
            # a directory without index.html: listed, or a 403 that says how to list it
            what += " listing=on" if server.handler.list_dirs else " listing=off (--list-dirs to list directories)"
        say(f"{where} {what}{extra} route={server.route} loop={loop_name} pid={os.getpid()}")
    await stop.wait()
    if server.log_level <= logs.STOPPING:
        busy = sum(not c.idle for c in server.connections)
        pid = os.getpid()
        if opts.app is None:
            server.log(logs.STOPPING, f"shutting down (pid {pid}): {busy} busy connection(s), grace {opts.grace:g} s")
        else:  # uvicorn's line, then how long the busy ones get
            say("Shutting down")
            if busy:
                say(f"Waiting for {busy} busy connection(s) to finish (grace {opts.grace:g} s)")
    await server.shutdown(opts.grace)
    if opts.app is None:
        server.log(logs.STOPPING, f"stopped (pid {os.getpid()})")
    else:
        server.log(logs.STOPPING, f"Finished server process [{os.getpid()}]")
    return 0


def running(opts: Options, scheme: str, host: str, port: int) -> str:
    """uvicorn's "running on" line, with zcopy's name."""
    if opts.fd is not None:
        return f"zcopy running on socket {(host, port) if port else host} (Press CTRL+C to quit)"
    if opts.uds is not None:
        return f"zcopy running on unix socket {opts.uds} (Press CTRL+C to quit)"
    shown = f"[{host}]" if ":" in host else host
    return f"zcopy running on {scheme}://{shown}:{port} (Press CTRL+C to quit)"


def settings_parser() -> str:
    from zcopy.serve.settings import PARSER

    return PARSER


def _ws_name(opts: Options) -> str:
    from zcopy.serve.asgi.websocket import available

    if opts.server_kwargs.get("ws", "auto") == "none" or not available():
        return "none"
    return "wsproto"


def _request_limit(opts: Options, stop: asyncio.Event) -> Callable[[], None]:
    """uvicorn's --limit-max-requests: after that many requests (plus a random jitter) the worker stops as on
    SIGTERM, finishing what it has in flight; a supervisor starts another in its place."""
    assert opts.limit_max_requests is not None
    limit = opts.limit_max_requests + random.randint(0, max(0, opts.limit_max_requests_jitter))
    seen = 0

    def on_request() -> None:
        nonlocal seen
        seen += 1
        if seen == limit:
            say(f"Maximum request limit of {limit} exceeded. Terminating process.")
            stop.set()

    return on_request


def serve_one(opts: Options, prepared: Prepared | None = None, slot: int = 0) -> int:
    """Run one server in this process until SIGTERM/SIGINT; returns the exit status.

    Without ``prepared``, prepare(opts) runs first: a ConfigError (bad certificate, busy port...) propagates.
    """
    if prepared is None:
        prepared = prepare(opts)
    loop_name, factory = loop_factory(opts.loop)
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(_serve(opts, prepared, slot, loop_name))
    finally:
        loop.close()


# Worker restart policy. A worker that exits within QUICK_EXIT seconds of starting failed at start-up; each
# such failure in a row doubles the wait before the next start (BACKOFF_FIRST, ×2, at most BACKOFF_MAX), and
# after MAX_QUICK_FAILURES in a row the server stops with the last worker's reason: a fault that survived the
# checks before forking (prepare) will not go away by retrying, and a tight restart loop only fills the log.
# A worker that ran longer (a crash under load) is replaced after BACKOFF_FIRST and resets the count, as
# nginx's master does. 5 s covers a worker's start-up (imports, lifespan) with a wide margin.
QUICK_EXIT = 5.0
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
MAX_QUICK_FAILURES = 5


def _spawn(opts: Options, prepared: Prepared, slot: int, report: int) -> int:
    pid = os.fork()
    if pid == 0:  # child: run a worker and never return into the parent's code
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            code = serve_one(opts, prepared, slot)
            reason = "" if code == 0 else f"exited with status {code}"
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if threshold(opts) <= logs.WORKER_DIED:
                say(f"worker {os.getpid()} failed: {reason}", logs.WORKER_DIED)
        finally:
            # One short line to the parent, so it can name the cause if it gives up (< PIPE_BUF: atomic).
            if code != 0:
                with contextlib.suppress(OSError):
                    os.write(report, (reason[:400].replace("\n", " ") + "\n").encode(errors="replace"))
            os._exit(code)
    return pid


def run(opts: Options) -> int:
    """`zcopy serve`: one process, or a parent supervising ``opts.workers`` SO_REUSEPORT workers.

    Raises ConfigError (before anything is served or forked) when the configuration cannot work.
    """
    threshold(opts)  # a bad level is a ValueError now, before binding or forking
    prepared = prepare(opts)
    try:
        if opts.workers <= 1:
            return serve_one(opts, prepared)
        return _supervise(opts, prepared)
    finally:
        prepared.close()


def _supervise(opts: Options, prepared: Prepared) -> int:
    floor = threshold(opts)

    def log(level: int, message: str) -> None:
        if level >= floor:
            say(message, level)

    if opts.app is not None:
        log(logs.STARTED, f"Started parent process [{os.getpid()}]")  # uvicorn's lines around its workers
    stopping = False
    forwarded: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        forwarded.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    report_r, report_w = os.pipe()
    os.set_blocking(report_r, False)
    reasons: list[str] = []

    def read_reasons() -> None:
        with contextlib.suppress(BlockingIOError):
            reasons.extend(os.read(report_r, 1 << 16).decode(errors="replace").splitlines())

    children: dict[int, tuple[int, float]] = {}  # pid → (slot, start time)
    restarts: list[tuple[float, int]] = []  # (when, slot) of workers waiting out their back-off
    for slot in range(opts.workers):
        children[_spawn(opts, prepared, slot, report_w)] = (slot, time.monotonic())
    quick_failures = 0
    status = 0
    deadline = float("inf")
    while children or (restarts and not stopping):
        while forwarded:
            signum = forwarded.pop(0)
            for pid in children:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
            if stopping and deadline == float("inf"):
                restarts.clear()
                deadline = time.monotonic() + opts.grace + opts.exit_slack
        now = time.monotonic()
        for when, slot in [r for r in restarts if r[0] <= now]:
            restarts.remove((when, slot))
            children[_spawn(opts, prepared, slot, report_w)] = (slot, now)
        try:
            pid, wstatus = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid, wstatus = 0, 0
        if pid == 0:
            if now > deadline:
                log(
                    logs.WORKER_DIED,
                    f"worker(s) {', '.join(map(str, children))} still running {opts.grace:g} + "
                    f"{opts.exit_slack:g} s after SIGTERM; killing them"
                )
                for p in children:
                    os.kill(p, signal.SIGKILL)
                deadline, status = float("inf"), status or 1
            time.sleep(0.05)
            continue
        slot, started = children.pop(pid)
        code = os.waitstatus_to_exitcode(wstatus)
        if stopping:
            status = status or (code if code > 0 else 0)
            continue
        if code == 0 and opts.limit_max_requests is not None:
            # It served its --limit-max-requests and stopped on purpose: replaced at once, not a failure.
            log(logs.STARTED, f"worker {pid} served its request limit; starting another")
            children[_spawn(opts, prepared, slot, report_w)] = (slot, time.monotonic())
            continue
        quick_failures = quick_failures + 1 if now - started < QUICK_EXIT else 0
        if quick_failures >= MAX_QUICK_FAILURES:
            read_reasons()
            why = reasons[-1] if reasons else _describe(code)
            log(
                logs.STARTUP_FAILED,
                f"workers failed {quick_failures} times in a row within {QUICK_EXIT:g} s of starting "
                f"(last: {why}); stopping"
            )
            # The last worker's own status when it chose one (3: the app's startup failed), else 1.
            stopping, status = True, code if code > 0 else 1
            forwarded.append(signal.SIGTERM)
            continue
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, quick_failures - 1))
        log(logs.WORKER_DIED, f"worker {pid} {_describe(code)}; starting another in {delay:g} s")
        restarts.append((now + delay, slot))
    os.close(report_r)
    os.close(report_w)
    if opts.app is not None:
        log(logs.STOPPING, f"Stopping parent process [{os.getpid()}]")
    return status


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
