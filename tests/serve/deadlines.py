"""Deadline checks bounded on both sides without timed thresholds: each deadline runs next to a control.

A server is started with the deadline under test (`short`) and another with a longer one (`control`), both on this
machine at the same time, so both see the same load. Each gets the same stuck client. The clock starts before the
client connects, so no correct server can drop it sooner than its deadline (the lower bound); and the short one
must be dropped well before the control (the upper bound, relative: a server that ignored the value, or fired
much later than asked, would be dropped with or after the control).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from .conftest import Running

SHORT, CONTROL = 0.5, 1.5

# open(r) -> socket: leaves a client stuck on r's server; returns once the server holds the connection.
Open = Callable[[Running], socket.socket]


def dropped_after(servers: list[Running], open_: Open, tick: Callable[[socket.socket], None] | None = None,
                  cap: float = 60.0) -> list[float]:
    """Seconds from just before each client connected until its server held no connection any more.
    `tick(sock)`, when given, runs every 0.1 s on every client still held (e.g. a trickle of bytes)."""
    t0 = time.monotonic()
    socks = [open_(r) for r in servers]
    done: list[float | None] = [None] * len(servers)
    next_tick = time.monotonic()
    try:
        while None in done and time.monotonic() - t0 < cap:
            for i, r in enumerate(servers):
                if done[i] is None and not r.server.connections:
                    done[i] = time.monotonic() - t0
            if tick is not None and time.monotonic() >= next_tick:
                next_tick += 0.1
                for i, s in enumerate(socks):
                    if done[i] is None:
                        tick(s)
            time.sleep(0.01)
    finally:
        for s in socks:
            s.close()
    assert None not in done, f"still held after {cap} s: {done}"
    return [d for d in done if d is not None]


def assert_on_time(short_s: float, control_s: float, times: list[float]) -> None:
    short_t, control_t = times
    assert short_t >= short_s and control_t >= control_s, ("dropped before its deadline", times)
    assert short_t < control_t - (control_s - short_s) / 2, ("the short deadline did not fire in time", times)
