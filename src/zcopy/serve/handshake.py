"""A TLS connection from accept until its handshake is done: counted, given a deadline, its failures logged once.

asyncio and uvloop create the protocol only once the handshake has finished, so a client that connects and never
sends a ClientHello would otherwise hold a socket that no limit counts and no deadline ends (slowloris for
HTTPS). The server accepts TLS sockets itself, puts a Handshake in its connection set (max_connections, the
deadline sweeper and shutdown see it like any connection) and hands the socket to the loop's SSL transport.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol


class HandshakeHost(Protocol):
    """What a Handshake needs of its server."""

    handshake_timeout: float

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def forget(self, conn: Any) -> None: ...

    def log_once(self, cause: str, message: str) -> None: ...


class Handshake:
    idle = True  # nothing in flight: graceful shutdown closes it at once

    def __init__(
        self,
        server: HandshakeHost,
        sock: socket.socket,
        peer: str,
        tls: ssl.SSLContext,
        protocol: Callable[[], asyncio.BaseProtocol],
    ) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.deadline = time.monotonic() + server.handshake_timeout
        self.expired = False
        self.closed = False
        self.handed_over = False
        # The loop's own handshake timer is only a backstop: the server's sweeper ends the handshake first.
        backstop = 2 * server.handshake_timeout + 1.0
        self._task = server.loop.create_task(self._run(tls, protocol, backstop))

    async def _run(self, tls: ssl.SSLContext, protocol: Callable[[], asyncio.BaseProtocol], backstop: float) -> None:
        server = self.server
        cause = why = ""
        try:
            # The protocol's connection_made (after the handshake) adopts it into the server's connections.
            await server.loop.connect_accepted_socket(protocol, self.sock, ssl=tls, ssl_handshake_timeout=backstop)
        except asyncio.CancelledError:
            if self.expired:
                cause, why = "TLS handshake timeout", f"not done within {server.handshake_timeout:g} s"
        except ConnectionAbortedError as exc:  # the backstop fired (asyncio and uvloop raise this on timeout)
            cause, why = "TLS handshake timeout", str(exc)
        except ssl.SSLError as exc:  # not TLS at all, no shared version or cipher, a bad record...
            cause, why = "TLS handshake failed", str(exc)
        except OSError as exc:  # reset or closed by the peer mid-handshake
            cause, why = "connection lost during the TLS handshake", exc.strerror or str(exc)
        else:
            self.handed_over = True  # the connection lives on as the protocol: its close is logged there
            return
        finally:
            self.closed = True
            server.forget(self)
        # Failed: the transport has closed the socket; closing our object again is harmless and covers a failure
        # before the transport existed.
        self.sock.close()
        if cause:
            server.log_once(cause, f"{self.peer}: {cause} ({why}); connection closed")

    def on_deadline(self) -> None:
        self.expired = True
        self.close()

    def close(self) -> None:
        if not self.closed:
            self._task.cancel()
