"""Log levels for `zcopy serve`: uvicorn's names and order, and the level of every event the server reports.

The events below are the one place that decides what each message is worth, so `--log-level warning` means
what it means under uvicorn; call sites name an event and compare one int before formatting anything frequent.
Pure: no I/O (server.py's ``say()`` writes the lines); ``traced()`` only wraps an app's receive/send.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

# The logging module's numbers, and uvicorn's TRACE (5) below DEBUG.
CRITICAL, ERROR, WARNING, INFO, DEBUG, TRACE = 50, 40, 30, 20, 10, 5
LEVELS: dict[str, int] = {
    "critical": CRITICAL,
    "error": ERROR,
    "warning": WARNING,
    "info": INFO,
    "debug": DEBUG,
    "trace": TRACE,
}

# -- what each event is worth (docs/serve.md#logging lists them) -----------------------------------------------
# Always shown (nothing is above CRITICAL): the server is not going to serve. `cannot listen on ...` and an app
# that cannot be imported are refused by the command line before any server exists, also always shown.
STARTUP_FAILED = CRITICAL  # lifespan startup failed (exit 3), workers failing at start until the server stops
# Something a request got wrong because of the app, the handler or the file: the client saw an error or a cut body.
APP_ERROR = ERROR  # exception in the ASGI app or the static handler (traceback); app left its response incomplete
SHORT_RESPONSE = ERROR  # body shorter than its Content-Length, file truncated during send: the connection is cut
LIFESPAN_FAILED = ERROR  # an exception in the lifespan task once started, shutdown failed or timed out
WORKER_DIED = ERROR  # a worker exited or was killed and is replaced; workers killed after the grace period
# The server is fine; a client, the machine or the set-up is not (what uvicorn logs at warning).
BAD_REQUEST = WARNING  # malformed request answered 400/414/431
REPEATED = WARNING  # log_once/log_throttled causes: accept errors, out of descriptors, TLS handshake failures
OVERLOADED = WARNING  # 503 over --limit-concurrency (throttled)
DEGRADED = WARNING  # WebSockets answered as HTTP (no wsproto); app without lifespan (auto); grace period over
# Progress.
STARTED = INFO  # the start-up line, lifespan startup complete
STOPPING = INFO  # shutdown progress: started, lifespan shutdown complete, stopped
# Per connection, per request.
CONNECTION = DEBUG  # connection accepted / closed
DISCONNECT = DEBUG  # the client went away before its response was complete
ASGI_MESSAGE = TRACE  # every ASGI message an app receives or sends
DISK_WAIT = TRACE  # a response body waited for the disk (cold chunks sent by disk threads), and for how long


def level(value: str | int) -> int:
    """The threshold for a level name (any case, as uvicorn takes it) or number; ValueError names the choices."""
    if isinstance(value, bool):  # bool is an int: True would mean level 1, surely not what was meant
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {value!r}")
    if isinstance(value, int):
        return value
    found = LEVELS.get(str(value).lower())
    if found is None:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {value!r}")
    return found


def describe(message: Any) -> str:
    """An ASGI message for a trace line: its type and shape (sizes, status, flags), never body bytes or headers."""
    if not isinstance(message, dict):
        return f"(not a dict: {type(message).__name__})"
    kind = message.get("type")
    out = [kind if isinstance(kind, str) else repr(kind)]
    status = message.get("status")
    if status is not None:
        out.append(f"status={status!r}")
    for key in ("body", "bytes", "text"):
        value = message.get(key)
        if isinstance(value, (bytes, bytearray, memoryview, str)):
            out.append(f"{key}={len(value)}")
    for key in ("more_body", "code"):
        if key in message:
            out.append(f"{key}={message[key]!r}")
    headers = message.get("headers")
    if isinstance(headers, (list, tuple)):
        out.append(f"headers={len(headers)}")
    return " ".join(out)


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[Any], Awaitable[None]]


def traced(receive: Receive, send: Send, log: Callable[[str], None], label: str) -> tuple[Receive, Send]:
    """receive/send that log each message first (trace level only: the normal path never pays for this)."""

    async def traced_receive() -> dict[str, Any]:
        message = await receive()
        log(f"{label}: ASGI receive {describe(message)}")
        return message

    async def traced_send(message: Any) -> None:
        log(f"{label}: ASGI send {describe(message)}")  # before: a message send() refuses is traced too
        await send(message)

    return traced_receive, traced_send
