"""From uvicorn-style settings to a running server, in uvicorn's order: logging, --env-file, import the app, the
notes about options that cannot apply (logged once), then serve, or watch and restart (--reload).

Shared by `zcopy serve` (cli/serve.py) and ``zcopy.serve.run()``, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
from typing import Any

from zcopy.serve import logconfig, logs
from zcopy.serve.settings import Plan, Settings, SettingsError, forwarded_ips, load_env_file, plan, tls_context


def configure_logging(s: Settings, *, static: bool = False) -> None:
    config = None if isinstance(s.log_config, str) and s.log_config == "default" else s.log_config
    # uvicorn's access lines are on by default for an app; a directory has them only when asked (--access-log).
    access = s.access_log if not static else "access_log" in s.explicit and s.access_log
    logconfig.configure(config, log_level=s.log_level, access_log=access, use_colors=s.use_colors, static=static)


def app_plan(s: Settings, label: str | None = None) -> Plan:
    """Configure logging, load the env file and the app (in this process, before any fork), make the plan."""
    from zcopy.serve.asgi.load import AppLoadError, load_app
    from zcopy.serve.asgi.scope import Trusted

    if s.log_level is not None:
        logs.level(s.log_level)  # a bad level is a ValueError before anything else happens
    configure_logging(s)
    notes: list[tuple[int, str]] = []
    load_env_file(s, notes)
    try:
        Trusted.parse(forwarded_ips(s))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    app = s.app
    if label is None:
        label = app if isinstance(app, str) else getattr(app, "__qualname__", type(app).__name__)
    if s.reload:
        if not isinstance(app, str):
            raise SettingsError("reload needs the application as an import string (\"MODULE:ATTR\"), as uvicorn")
        if not _watchfiles():
            notes.append(
                (logs.DEGRADED, "--reload needs watchfiles (pip install 'zcopy[standard]'); serving without "
                                "reloading")
            )  # fmt: skip
            s.reload = False
        else:
            # The reloader's own process never imports the app: each child imports it afresh.
            return Plan(None, notes, reload=True)
    elif s.reload_dirs or s.reload_includes or s.reload_excludes or (s.explicit and "reload_delay" in s.explicit):
        notes.append((logs.STARTED, "--reload-dir/--reload-include/--reload-exclude/--reload-delay: need --reload"))
    if isinstance(app, str):
        try:
            app = load_app(app, app_dir=s.app_dir if s.app_dir is not None else ".", factory=s.factory)
        except AppLoadError as exc:
            raise SettingsError(str(exc)) from None
    elif s.factory:
        app = app()
    return plan(s, app, str(label), notes)


def static_plan(s: Settings, args: argparse.Namespace) -> Plan:
    """`zcopy serve DIR`: the static server's options (uvicorn's shared ones: address, workers, TLS, logging)."""
    from zcopy.serve.settings import _loop
    from zcopy.serve.workers import Options

    if s.log_level is not None:
        logs.level(s.log_level)
    configure_logging(s, static=True)
    notes: list[tuple[int, str]] = []
    kwargs: dict[str, Any] = dict(s.server_kwargs)
    kwargs.update(
        list_dirs=args.list_dirs,
        dotfiles=args.dotfiles,
        cache_entries=args.cache_entries,
        cache_valid=args.cache_valid,
        follow_symlinks=not args.no_follow_symlinks,
        precompressed=not args.no_precompressed,
        keepalive_timeout=float(args.timeout_keep_alive) if args.timeout_keep_alive is not None else 30.0,
        backlog=s.backlog,
    )
    workers = s.workers if s.workers is not None else 1
    options = Options(
        root=args.dir,
        uds=s.uds if s.fd is None else None,
        fd=s.fd,
        host=s.host,
        port=s.port,
        workers=workers,
        loop=_loop(s, notes),
        grace=s.grace,
        access_log=s.access_log_file,
        json_log=s.json_log,
        uvicorn_access="access_log" in s.explicit and s.access_log,
        ssl_context=tls_context(s),
        quiet=s.quiet,
        log_level=None,  # the `uvicorn.error` logger's level, as logconfig.configure() set it
        backlog=s.backlog,
        server_kwargs=kwargs,
    )
    return Plan(options, notes)


def start(p: Plan, s: Settings) -> int:
    """Log the notes (once, here in the first process), then serve until SIGTERM, or reload."""
    from zcopy.serve.server import say

    for level, message in p.notes:
        say(message, level)
    if p.reload:
        from zcopy.serve.reload import supervise

        return supervise(s)
    from zcopy.serve.workers import run as run_workers

    return run_workers(p.options)


def _watchfiles() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True
