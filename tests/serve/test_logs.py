"""serve/logs.py: level names and numbers, trace summaries of ASGI messages, the receive/send wrapper."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from zcopy.cli.serve import LOG_LEVELS
from zcopy.serve import Server, logs


def test_level_names_as_uvicorn_takes_them() -> None:
    assert [logs.level(name) for name in LOG_LEVELS] == [50, 40, 30, 20, 10, 5]  # the CLI's choices, in order
    assert logs.level("WARNING") == logs.level("Warning") == logs.WARNING
    assert logs.level(25) == 25  # a number is a threshold as it is
    for bad in ("loud", "", "warn", True):
        with pytest.raises(ValueError, match="critical, error, warning, info, debug, trace"):
            logs.level(bad)  # type: ignore[arg-type]


def test_event_levels_keep_uvicorns_meaning() -> None:
    # What a user who swaps uvicorn for zcopy relies on: --log-level warning hides progress but not bad clients,
    # error hides bad clients but never an app's exception, and nothing hides a server that will not start.
    at = {name: logs.level(name) for name in LOG_LEVELS}
    shown = {name: [e for e in ("STARTUP_FAILED", "APP_ERROR", "BAD_REQUEST", "STARTED", "CONNECTION",
                                "ASGI_MESSAGE") if getattr(logs, e) >= threshold]
             for name, threshold in at.items()}  # fmt: skip
    assert shown == {
        "critical": ["STARTUP_FAILED"],
        "error": ["STARTUP_FAILED", "APP_ERROR"],
        "warning": ["STARTUP_FAILED", "APP_ERROR", "BAD_REQUEST"],
        "info": ["STARTUP_FAILED", "APP_ERROR", "BAD_REQUEST", "STARTED"],
        "debug": ["STARTUP_FAILED", "APP_ERROR", "BAD_REQUEST", "STARTED", "CONNECTION"],
        "trace": ["STARTUP_FAILED", "APP_ERROR", "BAD_REQUEST", "STARTED", "CONNECTION", "ASGI_MESSAGE"],
    }


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ({"type": "http.request", "body": b"abc", "more_body": True}, "http.request body=3 more_body=True"),
        ({"type": "http.response.start", "status": 404, "headers": [(b"a", b"b")]},
         "http.response.start status=404 headers=1"),
        ({"type": "http.response.body"}, "http.response.body"),
        ({"type": "websocket.send", "text": "héllo"}, "websocket.send text=5"),
        ({"type": "websocket.close", "code": 1000}, "websocket.close code=1000"),
        ({"type": "http.response.pathsend", "path": "/etc/secret"}, "http.response.pathsend"),
        ({"type": 7, "body": memoryview(b"xy")}, "7 body=2"),
        ({}, "None"),
        ("http.request", "(not a dict: str)"),
    ],
)  # fmt: skip
def test_describe_says_shape_never_content(message: Any, text: str) -> None:
    assert logs.describe(message) == text


def test_traced_logs_each_message_in_order_and_passes_it_on() -> None:
    got: list[Any] = []
    lines: list[str] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"hi", "more_body": False}

    async def send(message: Any) -> None:
        got.append(message)

    async def app() -> None:
        r, s = logs.traced(receive, send, lines.append, "peer GET /")
        assert (await r())["body"] == b"hi"
        await s({"type": "http.response.start", "status": 200})

    asyncio.run(app())
    assert got == [{"type": "http.response.start", "status": 200}]
    assert lines == ["peer GET /: ASGI receive http.request body=2 more_body=False",
                     "peer GET /: ASGI send http.response.start status=200"]  # fmt: skip


def _server(root: Path, level: str) -> Server:
    server = Server(root, log_level=level)
    assert server.resolver is not None
    server.resolver.close()  # never started: only its root fd to give back
    return server


def test_server_checks_its_level(tmp_path: Path) -> None:
    assert _server(tmp_path, "debug").log_level == logs.DEBUG
    with pytest.raises(ValueError, match="not 'verbose'"):
        Server(tmp_path, log_level="verbose")


def test_server_writes_only_at_or_above_its_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _server(tmp_path, "warning")
    server.log(logs.CONNECTION, "not this")
    server.log(logs.BAD_REQUEST, "this")
    server.log_once("cause", "nor this", logs.INFO)
    server.log_once("cause", "but this")  # the earlier call was below the level: the cause is still unlogged
    server.log_throttled("t", "not throttled in", logs.DEBUG)
    try:
        raise RuntimeError("kept")
    except RuntimeError:
        server.log_exception(logs.STARTED, "no traceback")
        server.log_exception(logs.APP_ERROR, "a traceback")
    err = capsys.readouterr().err
    assert err.startswith("zcopy serve: this\nzcopy serve: but this (further 'cause' events are not logged)\n"), err
    assert "not this" not in err and "nor this" not in err and "throttled" not in err and "no traceback" not in err
    assert "zcopy serve: a traceback\nTraceback" in err and "RuntimeError: kept" in err
