"""The ASGI lifespan protocol: startup before the first accept, shutdown after the last response.

Modes (uvicorn's ``--lifespan``): ``on`` — the app must support it, any failure stops the server; ``auto`` — an
app that raises before answering the startup event is taken not to support lifespan, but the exception is
always logged (Starlette issue 486: a swallowed startup error is the worst kind); ``off`` — never called.
``lifespan.startup.failed`` stops the server in every mode. ``state`` is the dict the app fills at startup and
every request scope gets a shallow copy of.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from zcopy.serve import logs

SCOPE_ASGI = {"version": "3.0", "spec_version": "2.0"}

# (what we are waiting for, message type the app sent) → outcome; anything else is a protocol error.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("startup", "lifespan.startup.complete"): "started",
    ("startup", "lifespan.startup.failed"): "startup failed",
    ("shutdown", "lifespan.shutdown.complete"): "stopped",
    ("shutdown", "lifespan.shutdown.failed"): "shutdown failed",
}


class LifespanError(Exception):
    """Startup failed (the message says how); the server must not start."""


class Lifespan:
    """Runs the app's lifespan task: ``await startup()`` then, at the end, ``await shutdown()``."""

    def __init__(
        self,
        app: Any,
        mode: str,
        log: Callable[[int, str], None],
        log_exception: Callable[[int, str], None],
    ) -> None:
        self.app = app
        self.mode = mode
        self.log = log  # (level, message), levels from logs.py
        self.log_exception = log_exception
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self.waiting = "startup"
        self.outcome = ""
        self.message = ""
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answered: asyncio.Event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failed_early = False

    async def _receive(self) -> dict[str, Any]:
        return await self._events.get()

    async def _send(self, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        outcome = TRANSITIONS.get((self.waiting, kind))  # type: ignore[arg-type]
        if outcome is None:
            raise RuntimeError(f"unexpected lifespan message {kind!r} while waiting for {self.waiting}")
        self.outcome = outcome
        self.message = str(message.get("message", "") or "")
        self._answered.set()

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": SCOPE_ASGI, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if self.waiting == "startup" and not self._answered.is_set():
                self._failed_early = True
                if self.mode == "auto":
                    # Raising on an unknown scope type is how many apps say "no lifespan": not an error.
                    msg = "ASGI 'lifespan' protocol appears unsupported (the app raised on lifespan.startup)."
                    self.log_exception(logs.DEGRADED, msg)
                else:
                    self.log_exception(logs.STARTUP_FAILED, "lifespan: exception during startup")
            else:
                self.log_exception(logs.LIFESPAN_FAILED, f"lifespan: exception during {self.waiting}")
        finally:
            self._answered.set()  # whoever waits learns the task is over

    async def startup(self) -> None:
        """Send lifespan.startup and wait for the answer; LifespanError when the server must not start."""
        if not self.supported:
            return
        self.log(logs.STARTED, "Waiting for application startup.")  # uvicorn's lifespan lines, word for word
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._events.put({"type": "lifespan.startup"})
        await self._answered.wait()
        if self.outcome == "started":
            self.log(logs.STARTED, "Application startup complete.")
            return
        if self.outcome == "startup failed":
            raise LifespanError(f"application startup failed: {self.message or '(no message)'}")
        # The task ended without answering: an exception (already logged) or a plain return.
        if self.mode == "on":
            raise LifespanError("application startup failed: the lifespan task ended without completing startup")
        if not self._failed_early:
            self.log(logs.DEGRADED, "ASGI 'lifespan' protocol appears unsupported (the app returned on startup).")
        self.supported = False

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Send lifespan.shutdown and wait (at most ``timeout`` s) for the app to finish it."""
        task = self._task
        if not self.supported or task is None or task.done():
            return
        self.waiting = "shutdown"
        self.outcome = ""
        self.log(logs.STOPPING, "Waiting for application shutdown.")
        self._answered.clear()
        await self._events.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._answered.wait(), timeout)
        except (TimeoutError, asyncio.TimeoutError):  # two classes before Python 3.11
            self.log(logs.LIFESPAN_FAILED, f"lifespan: shutdown did not finish within {timeout} s")
        if self.outcome == "shutdown failed":
            self.log(logs.LIFESPAN_FAILED, f"lifespan: application shutdown failed: {self.message or '(no message)'}")
        elif self.outcome == "stopped":
            self.log(logs.STOPPING, "Application shutdown complete.")
        if not task.done():
            # The spec lets the app return after shutdown.complete; a task still running is cancelled.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(task, 1.0)
