"""ASGI application wrappers for uvicorn's --interface and --reset-contextvars (pure: no sockets, no logging).

Each wrapper is applied once, at start-up, and only when its option asks for it: an ASGI 3 application served
with the defaults is called directly, without an extra frame per request.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from typing import Any

INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")


def is_asgi2(app: Any) -> bool:
    """uvicorn's rule for ``--interface auto``: ASGI 2 is a class without ``__await__``, or anything whose call is
    not a coroutine function (``app(scope)`` returns the instance that is then awaited with receive, send)."""
    if inspect.isclass(app):
        return not hasattr(app, "__await__")
    if inspect.isfunction(app):
        return not asyncio.iscoroutinefunction(app)
    call = getattr(app, "__call__", None)  # noqa: B004 - the bound __call__ is what decides
    return not asyncio.iscoroutinefunction(call)


def asgi2(app: Any) -> Callable[..., Any]:
    """An ASGI 3 application around an ASGI 2 one (the usual double-callable adapter)."""

    async def asgi3(scope: dict[str, Any], receive: Any, send: Any) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi3


def fresh_context(app: Any) -> Callable[..., Any]:
    """Run each call of ``app`` in a new, empty contextvars.Context (uvicorn's --reset-contextvars): a value set
    during lifespan startup, or by an earlier request on the connection, is not seen by the next request."""

    async def isolated(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "lifespan":
            await app(scope, receive, send)
            return
        # create_task copies the current context: called inside a fresh one, the task runs in that copy. Awaiting
        # the task keeps cancellation (shutdown past its grace period) flowing into the app.
        task = contextvars.Context().run(asyncio.get_running_loop().create_task, app(scope, receive, send))
        await task

    return isolated


def counted(app: Any, on_request: Callable[[], None]) -> Callable[..., Any]:
    """Call ``on_request()`` before each HTTP request or WebSocket reaches ``app`` (--limit-max-requests)."""

    async def counting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "lifespan":
            on_request()
        await app(scope, receive, send)

    return counting
