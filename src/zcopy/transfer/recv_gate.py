"""Admission for a receiver that serves many sessions at once: how many connections may be mid-handshake (not yet
authenticated), how many authenticated sessions may run, the overall deadline a connection has to authenticate,
and which target paths a running session has claimed (so two sessions never write the same file).

Threads only: no sockets are read here. The receiver glue asks `Gate.enter()` at accept, starts a `Deadline` that
shuts the connection down if authentication has not finished in time, calls `Gate.admit()` once the handshake
succeeded, and `Ticket.release()` when the session ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable

from zcopy.transfer.errors import E_EXISTS, E_IO, TransferError

# Defaults of `zcopy recv` (and Receiver): sessions that may run at once, connections that may be in their
# handshake at once (a separate, small pool, so idle or drip-feeding peers cannot take a real sender's place),
# and seconds a connection has, in all, to finish TLS and the token proofs.
MAX_SESSIONS = 4
MAX_HANDSHAKES = 8
AUTH_TIMEOUT = 10.0


class Busy(TransferError):
    """Every session slot is taken: the sender is told so and may retry."""

    code = E_IO


class Ticket:
    """One accepted connection's place: in the handshake pool, then (admitted) in the session pool."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self.state = "handshake"  # → "session" → "done"

    def admit(self) -> None:
        """Authenticated: take a session slot (raises Busy when none is free)."""
        self._gate._admit(self)

    def release(self) -> None:
        """Give the place back (idempotent)."""
        self._gate._release(self)


class Gate:
    """Counts connections in their handshake and authenticated sessions against their limits."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, max_handshakes: int = MAX_HANDSHAKES) -> None:
        if max_sessions < 1 or max_handshakes < 1:
            raise ValueError("max_sessions and max_handshakes must be at least 1")
        self.max_sessions = max_sessions
        self.max_handshakes = max_handshakes
        self.handshakes = 0
        self.sessions = 0
        self._lock = threading.Lock()

    def enter(self) -> Ticket | None:
        """A new connection: its ticket, or None when the handshake pool is full (close it at once)."""
        with self._lock:
            if self.handshakes >= self.max_handshakes:
                return None
            self.handshakes += 1
            return Ticket(self)

    def ticket(self) -> Ticket:
        """A ticket for a connection the caller admits by itself (a fresh Gate always has room)."""
        ticket = self.enter()
        if ticket is None:
            raise Busy(f"the receiver is busy: {self.max_handshakes} connection(s) in their handshake")
        return ticket

    def _admit(self, ticket: Ticket) -> None:
        """The connection authenticated: move it to the session pool, or raise Busy when that is full."""
        with self._lock:
            if ticket.state != "handshake":
                return
            self.handshakes -= 1
            if self.sessions >= self.max_sessions:
                ticket.state = "done"
                raise Busy(f"the receiver is busy: {self.max_sessions} session(s) at once (--max-sessions); "
                           "try again later")
            self.sessions += 1
            ticket.state = "session"

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.state == "handshake":
                self.handshakes -= 1
            elif ticket.state == "session":
                self.sessions -= 1
            ticket.state = "done"


class Deadline:
    """Shuts `sock` down (both ways) unless cancel() comes within `seconds`: a blocked recv or TLS handshake on
    it then ends, however slowly the peer drips bytes. `expired` says whether it fired."""

    def __init__(self, sock: socket.socket, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False
        self._sock = sock
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._timer is None:
                return
            self.expired = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        """Authentication finished in time: the deadline no longer applies."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class Claims:
    """Target paths (name components below the receiver's root) that running sessions are writing."""

    def __init__(self) -> None:
        self._held: set[tuple[bytes, ...]] = set()
        self._lock = threading.Lock()

    def claim(self, paths: Iterable[tuple[bytes, ...]]) -> frozenset[tuple[bytes, ...]]:
        """Claim every path or none: raises TransferError (E_EXISTS) naming the first one another session holds."""
        want = frozenset(paths)
        with self._lock:
            taken = want & self._held
            if taken:
                name = b"/".join(min(taken)).decode("utf-8", "backslashreplace")
                more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
                raise TransferError(f"{name}{more} is being received by another session right now; refused "
                                    "(send it again when that session has ended)", E_EXISTS)
            self._held |= want
        return want

    def release(self, paths: frozenset[tuple[bytes, ...]]) -> None:
        with self._lock:
            self._held -= paths

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)


__all__ = ["AUTH_TIMEOUT", "MAX_HANDSHAKES", "MAX_SESSIONS", "Busy", "Claims", "Deadline", "Gate", "Ticket"]
