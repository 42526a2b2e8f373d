"""`--app MODULE:ATTR` → the ASGI application object (with --app-dir and --factory), or a clear error."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from typing import Any


class AppLoadError(Exception):
    """The application could not be found or imported; the message says why (and shows the app's traceback)."""


def load_app(spec: str, *, app_dir: str | None = ".", factory: bool = False) -> Any:
    """Import ``MODULE:ATTR`` (ATTR may be dotted); with ``factory`` call it to get the app."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f'--app must look like "MODULE:ATTR" (e.g. main:app), not {spec!r}')
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if not os.path.isdir(path):
            raise AppLoadError(f"--app-dir is not a directory: {app_dir}")
        if path not in sys.path:
            sys.path.insert(0, path)  # like uvicorn: the app's directory wins over installed packages
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise AppLoadError(f"could not import module {module_name!r} (looked in {app_dir or 'sys.path'})") from None
        raise AppLoadError(f"error while importing {module_name!r}:\n{_user_traceback()}") from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppLoadError(f"error while importing {module_name!r}:\n{_user_traceback()}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"attribute {attr!r} not found in module {module_name!r}") from None
    if factory:
        if not callable(obj):
            raise AppLoadError(f"--factory: {spec} is not callable")
        try:
            obj = obj()
        except Exception:
            raise AppLoadError(f"error while calling the factory {spec}:\n{_user_traceback()}") from None
    if not callable(obj):
        raise AppLoadError(f"{spec} is not an ASGI application (not callable); a factory needs --factory")
    if not factory and inspect.isfunction(obj) and not inspect.iscoroutinefunction(obj):
        try:
            params = len(inspect.signature(obj).parameters)
        except (TypeError, ValueError):
            params = 3
        if params == 0:
            raise AppLoadError(f"{spec} takes no arguments: is it an app factory? (then add --factory)")
    return obj


def _user_traceback() -> str:
    """The current exception's traceback without this module's frames: what the app's author needs to see."""
    etype, exc, tb = sys.exc_info()
    frames = traceback.extract_tb(tb)
    keep = [f for f in frames if "importlib" not in f.filename and f.filename != __file__]
    lines = traceback.format_list(keep) + traceback.format_exception_only(etype, exc)
    return "".join(lines).rstrip()
