"""uvicorn's --reload: a watcher process that owns the listening socket and runs the server in a child, started
afresh (a new interpreter, so the app's code is imported again) whenever a watched file changes.

The socket stays bound across restarts (the child gets it as --fd), so clients see no refused connections, only
a short wait. Watching is watchfiles' (an optional extra, as for uvicorn); without it --reload is logged and
ignored (startup.py). The filters are uvicorn's: include ``*.py``, exclude ``.*``, ``.py[cod]``, ``.sw.*``, ``~*``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from zcopy.serve.server import say
from zcopy.serve.settings import Settings, SettingsError

ENV = "ZCOPY_RELOAD_SETTINGS"
INCLUDES = ("*.py",)
EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")


def _as_list(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class Filter:
    """Which changed paths restart the server: a name matching an include pattern and no exclude pattern."""

    def __init__(self, includes: list[str], excludes: list[str]) -> None:
        # As uvicorn: a pattern given to one list is taken out of the other's defaults.
        self.includes = [p for p in (*INCLUDES, *includes) if p not in excludes]
        self.excludes = [p for p in (*EXCLUDES, *excludes) if p not in includes]

    def __call__(self, change: Any, path: str) -> bool:
        name = os.path.basename(path)
        if any(fnmatch.fnmatch(name, p) or Path(path).match(p) for p in self.excludes):
            return False
        return any(fnmatch.fnmatch(name, p) or Path(path).match(p) for p in self.includes)


def _encode(s: Settings) -> str:
    data = {}
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        if callable(value) and f.name != "app":
            raise SettingsError(f"reload: {f.name} cannot be passed to the reloaded process (a callable)")
        data[f.name] = sorted(value) if isinstance(value, frozenset) else value
    try:
        return json.dumps(data)
    except TypeError as exc:
        raise SettingsError(f"reload: the settings cannot be passed to the reloaded process: {exc}") from None


def _decode(text: str) -> Settings:
    data = json.loads(text)
    data["explicit"] = frozenset(data["explicit"])
    if data.get("headers"):
        data["headers"] = [tuple(h) for h in data["headers"]]
    return Settings(**data)


def _listen(s: Settings) -> Any:
    from zcopy.serve.prepare import inherited, listen
    from zcopy.serve.server import listen_unix

    if s.fd is not None:
        return inherited(s.fd, s.backlog)
    if s.uds is not None:
        return listen_unix(s.uds, s.backlog)
    return listen(s.host, s.port, 1, s.backlog)[0]


def supervise(s: Settings) -> int:
    """Serve ``s`` in a child process, restarted on every change, until SIGINT/SIGTERM."""
    import watchfiles

    sock = _listen(s)
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    if s.workers is not None and s.workers > 1:
        say('"workers" flag is ignored when reloading is enabled.', 30)  # uvicorn's words
    child_settings = dataclasses.replace(s, reload=False, fd=fd, uds=None, workers=1, explicit=s.explicit | {"fd"})
    env = {**os.environ, ENV: _encode(child_settings)}
    dirs = [os.path.abspath(d) for d in _as_list(s.reload_dirs)] or [os.getcwd()]
    for d in dirs:
        if not os.path.isdir(d):
            raise SettingsError(f"--reload-dir is not a directory: {d}")
    pid = os.getpid()
    say(f"Will watch for changes in these directories: {dirs}")
    say(f"Started reloader process [{pid}] using WatchFiles")
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    flt = Filter(_as_list(s.reload_includes), _as_list(s.reload_excludes))
    argv = [sys.executable, "-c", "from zcopy.serve.reload import child; child()"]
    child = subprocess.Popen(argv, pass_fds=(fd,), env=env)
    try:
        for changes in watchfiles.watch(
            *dirs, watch_filter=flt, stop_event=stop, step=max(1, int(s.reload_delay * 1000)),
            rust_timeout=500, yield_on_timeout=True, raise_interrupt=False,
        ):  # fmt: skip
            if stop.is_set():
                break
            if not changes:
                continue
            names = sorted({os.path.relpath(path) for _, path in changes})
            say(f"WatchFiles detected changes in {', '.join(repr(n) for n in names)}. Reloading...")
            _stop_child(child, s.grace)
            child = subprocess.Popen(argv, pass_fds=(fd,), env=env)
    finally:
        _stop_child(child, s.grace)
        sock.close()
        say(f"Stopping reloader process [{pid}]")
    return 0


def _stop_child(child: subprocess.Popen[bytes], grace: float) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(grace + 5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def child() -> None:
    """The reloaded server: the settings come from the watcher; the socket is its --fd."""
    from zcopy.serve.startup import app_plan, start

    s = _decode(os.environ.pop(ENV))
    try:
        code = start(app_plan(s), s)
    except SettingsError as exc:  # e.g. a syntax error just saved: say it, wait for the next change
        say(str(exc), 40)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        code = 1
    sys.exit(code)
