"""`zcopy relay`: pairs two clients that ask for the same nameplate, then moves their bytes both ways with
splice(2) — socket → pipe → socket — so no payload byte ever enters user space, and the relay never holds a key.

One thread, one epoll loop (selectors), level-triggered. Per paired session: two pumps (sender → receiver and
back), each a pipe of up to 1 MiB. A pump reads what the source socket has into its pipe and writes what the
pipe holds to the destination; it waits for the destination to become writable only when the pipe could not be
emptied, and stops reading while its pipe is full, so a slow peer never makes the relay spin or buffer more
than one pipe per direction. The only bytes the relay reads itself are the clients' small REQUESTs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from zcopy.relay import protocol as rp

PIPE_SIZE = 1 << 20
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# Out of descriptors, accepting pauses this long (the listener would otherwise stay readable and spin the loop).
ACCEPT_PAUSE_S = 0.2
# A client must finish its REQUEST within this long (bounded by the pairing timeout).
REQUEST_TIMEOUT_S = 10.0

Log = Callable[[dict[str, object]], None]


@dataclass(frozen=True)
class Limits:
    """What one relay admits; every one a `zcopy relay` flag."""

    max_sessions: int = 1000  # nameplates (waiting or paired) at once
    max_per_address: int = 16  # connections from one client IP at once, in any state
    pairing_timeout: float = 300.0  # seconds a client waits for its peer
    idle_timeout: float = 600.0  # seconds a paired session may move no byte
    max_bytes: int = 0  # bytes per session, both ways together (0: no limit)
    grace: float = 30.0  # on shutdown, seconds paired sessions may take to finish


class _Peer:
    def __init__(self, sock: socket.socket, addr: tuple[str, int], deadline: float) -> None:
        self.sock = sock
        self.ip = addr[0]
        self.addr = f"{addr[0]}:{addr[1]}"
        self.head = bytearray()
        self.want = rp.REQUEST_HEAD
        self.deadline = deadline
        self.side = 0
        self.session: _Session | None = None
        self.events = 0


class _Pump:
    """One direction of a paired session: src socket → pipe → dst socket."""

    def __init__(self, src: _Peer, dst: _Peer) -> None:
        self.src = src
        self.dst = dst
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.cap = 1 << 16
        with contextlib.suppress(OSError):  # over the per-user pipe budget: stay at the default size
            self.cap = fcntl.fcntl(self.w, _F_SETPIPE_SZ, PIPE_SIZE)
        self.in_pipe = 0
        self.full = False  # the last read found the pipe full (not the socket empty): wait for a write
        self.blocked = False  # the destination could not take all the pipe held: wait until writable
        self.eof = False
        self.done = False
        self.bytes = 0

    def wants_read(self) -> bool:
        return not self.eof and not self.full and self.in_pipe < self.cap

    def step(self) -> int:
        """Move what can move without blocking; returns bytes delivered to the destination."""
        if not self.eof and self.in_pipe < self.cap:
            try:
                n = os.splice(self.src.sock.fileno(), self.w, self.cap - self.in_pipe, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                self.full = self.in_pipe > 0
            else:
                if n == 0:
                    self.eof = True
                self.in_pipe += n
        moved = 0
        if self.in_pipe:
            try:
                moved = os.splice(self.r, self.dst.sock.fileno(), self.in_pipe, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                moved = 0
            self.in_pipe -= moved
            self.bytes += moved
            self.blocked = self.in_pipe > 0
            if moved:
                self.full = False
        if self.eof and not self.in_pipe and not self.done:
            self.done = True
            with contextlib.suppress(OSError):
                self.dst.sock.shutdown(socket.SHUT_WR)
        return moved

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class _Session:
    def __init__(self, nameplate: str, now: float) -> None:
        self.nameplate = nameplate
        self.peers: dict[int, _Peer] = {}
        self.created = now
        self.paired = 0.0
        self.active = now
        self.pumps: tuple[_Pump, _Pump] | None = None  # (sender → receiver, receiver → sender)


class Relay:
    """A relay listening on `listen`. serve_forever() runs until shutdown() (from any thread or a signal
    handler), then lets paired sessions finish for `limits.grace` seconds. `log` gets one dict per event:
    "listening", "session" (one per nameplate that ended), "refused" and "stopped"."""

    def __init__(self, listen: tuple[str, int], limits: Limits | None = None, log: Log | None = None) -> None:
        self.limits = limits or Limits()
        self.log = log or (lambda _: None)
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.listener = socket.create_server(listen, family=family, backlog=512)
        self.listener.setblocking(False)
        host, port = self.listener.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.sessions: dict[str, _Session] = {}
        self.per_ip: dict[str, int] = {}
        self.peers: set[_Peer] = set()
        self.stopping = 0.0  # when shutdown() was asked (0: running)
        self.accept_paused = 0.0  # out of descriptors: accepting resumes at this time
        with contextlib.suppress(ValueError, OSError):  # two sockets and four pipe ends per session
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    # -- lifecycle ------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop accepting; waiting clients are told; paired sessions get `grace` seconds. Safe from a signal
        handler or another thread."""
        if not self.stopping:
            self.stopping = time.monotonic()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: object) -> None:
            if self.stopping:  # a second signal: do not wait for the grace period
                self.stopping = -1.0
            self.shutdown()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def close(self) -> None:
        for s in list(self.sessions.values()):
            self._end(s, "shutdown")
        for peer in list(self.peers):
            self._drop(peer)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.listener)
        self.listener.close()
        self.sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def serve_forever(self) -> None:
        self.log({"event": "listening", "address": _fmt(self.address), "route": "splice"})
        closed_listener = False
        swept = 0.0
        try:
            while True:
                now = time.monotonic()
                if self.stopping and not closed_listener:
                    closed_listener = True
                    if not self.accept_paused:
                        self.sel.unregister(self.listener)
                    self.listener.close()
                    for s in list(self.sessions.values()):
                        if s.pumps is None:
                            self._refuse_session(s, "the relay is shutting down", "shutdown")
                    for peer in list(self.peers):
                        if peer.session is None:
                            self._drop(peer)
                if self.stopping and (not self.sessions or self.stopping < 0
                                      or now - self.stopping >= self.limits.grace):
                    break
                for key, mask in self.sel.select(timeout=self._next_timeout(now)):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    else:
                        peer = key.data
                        assert isinstance(peer, _Peer)
                        if peer in self.peers:
                            self._on_peer(peer, mask)
                now = time.monotonic()
                if self.accept_paused and now >= self.accept_paused and not closed_listener:
                    self.accept_paused = 0.0
                    self.sel.register(self.listener, selectors.EVENT_READ, None)
                if now - swept >= 0.25:  # timers are coarse: a sweep per event batch would cost O(sessions)
                    swept = now
                    self._sweep(now)
        finally:
            self.close()
            self.log({"event": "stopped"})

    def _next_timeout(self, now: float) -> float:
        return 1.0 if not (self.stopping or self.accept_paused) else 0.2

    # -- accepting and requests -----------------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving the sessions we have
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The connection stays in the backlog and the listener stays readable: stop watching it for
                    # a moment rather than spin, and say so once.
                    self.log({"event": "refused", "reason": "out of descriptors", "message": f"accept: {exc.strerror}"})
                    self.sel.unregister(self.listener)
                    self.accept_paused = time.monotonic() + ACCEPT_PAUSE_S
                    return
                raise
            sock.setblocking(False)
            now = time.monotonic()
            peer = _Peer(sock, addr, now + min(REQUEST_TIMEOUT_S, self.limits.pairing_timeout))
            if self.per_ip.get(peer.ip, 0) >= self.limits.max_per_address:
                self._refuse(peer, f"too many connections from {peer.ip} (limit {self.limits.max_per_address})",
                             "per-address limit", counted=False)
                continue
            self.per_ip[peer.ip] = self.per_ip.get(peer.ip, 0) + 1
            self.peers.add(peer)
            self._watch(peer, selectors.EVENT_READ)

    def _watch(self, peer: _Peer, events: int) -> None:
        if events == peer.events:
            return
        if not peer.events:
            self.sel.register(peer.sock, events, peer)
        elif not events:
            self.sel.unregister(peer.sock)
        else:
            self.sel.modify(peer.sock, events, peer)
        peer.events = events

    def _on_peer(self, peer: _Peer, mask: int) -> None:
        s = peer.session
        if s is None:
            self._read_request(peer)
        elif s.pumps is None:
            self._waiting_readable(peer)
        else:
            self._pump(s, peer, mask)

    def _read_request(self, peer: _Peer) -> None:
        try:
            data = peer.sock.recv(peer.want - len(peer.head))  # exactly the request: nothing past it
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(peer)
            return
        if not data:
            self._drop(peer)
            return
        peer.head += data
        if len(peer.head) < peer.want:
            return
        try:
            if peer.want == rp.REQUEST_HEAD:
                peer.want = rp.request_length(bytes(peer.head))
                if peer.want > len(peer.head):
                    return
            req = rp.decode_request(bytes(peer.head))
        except rp.RelayProtocolError as exc:
            self._refuse(peer, str(exc), "bad request")
            return
        self._admit(peer, req)

    def _admit(self, peer: _Peer, req: rp.Request) -> None:
        now = time.monotonic()
        if req.op == rp.OP_ALLOCATE:
            if len(self.sessions) >= self.limits.max_sessions:
                self._refuse(peer, f"the relay is full ({self.limits.max_sessions} sessions)", "session limit")
                return
            plate = self._free_nameplate()
            s = self.sessions[plate] = _Session(plate, now)
        else:
            plate = req.nameplate
            s_or_none = self.sessions.get(plate)
            if s_or_none is None:
                if len(self.sessions) >= self.limits.max_sessions:
                    self._refuse(peer, f"the relay is full ({self.limits.max_sessions} sessions)", "session limit")
                    return
                s_or_none = self.sessions[plate] = _Session(plate, now)
            s = s_or_none
            if s.pumps is not None or len(s.peers) >= 2 or req.side in s.peers:
                self._refuse(peer, f"nameplate {plate} is in use (two peers at most, one of each side)",
                             "nameplate in use", nameplate=plate)
                return
        peer.side = req.side
        peer.session = s
        s.peers[req.side] = peer
        peer.deadline = s.created + self.limits.pairing_timeout
        if not self._reply(peer, rp.Reply(rp.ST_WAITING, rp.waiting_text(plate, self.limits.pairing_timeout))):
            self._end(s, "reset")
            return
        if len(s.peers) == 2:
            self._pair(s, now)

    def _free_nameplate(self) -> str:
        n = 1
        while str(n) in self.sessions:
            n += 1
        return str(n)

    def _reply(self, peer: _Peer, reply: rp.Reply) -> bool:
        """A reply is a few bytes on a fresh socket: it fits its send buffer, or the peer is broken."""
        data = reply.encode()
        try:
            return peer.sock.send(data) == len(data)
        except OSError:
            return False

    def _waiting_readable(self, peer: _Peer) -> None:
        """A waiting client must not speak before PAIRED: EOF means it left, data breaks the protocol."""
        try:
            data = peer.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        s = peer.session
        assert s is not None
        if data:  # no peer yet, so nothing to forward: read it away, so the close below is no RST over the reply
            with contextlib.suppress(OSError):
                peer.sock.recv(1 << 16)
            self._reply(peer, rp.Reply(rp.ST_REFUSED, "sent data before it was paired"))
        self._end(s, "peer left before pairing" if not data else "bad request")

    def _pair(self, s: _Session, now: float) -> None:
        snd, rcv = s.peers[rp.SIDE_SENDER], s.peers[rp.SIDE_RECEIVER]
        try:
            s.pumps = (_Pump(snd, rcv), _Pump(rcv, snd))
        except OSError as exc:  # out of descriptors for the pipes
            for peer in (snd, rcv):
                self._reply(peer, rp.Reply(rp.ST_REFUSED, f"the relay cannot pair now: {exc.strerror}"))
            self._end(s, "no resources")
            return
        s.paired = s.active = now
        for peer in (snd, rcv):
            peer.deadline = 0.0
            if not self._reply(peer, rp.Reply(rp.ST_PAIRED)):
                self._end(s, "reset")
                return
        self._rewatch(s)

    # -- forwarding -------------------------------------------------------------------------------------------
    def _rewatch(self, s: _Session) -> None:
        assert s.pumps is not None
        there, back = s.pumps
        for peer, out, inn in ((there.src, there, back), (back.src, back, there)):
            ev = (selectors.EVENT_READ if out.wants_read() else 0) | (selectors.EVENT_WRITE if inn.blocked else 0)
            self._watch(peer, ev)

    def _pump(self, s: _Session, peer: _Peer, mask: int) -> None:
        assert s.pumps is not None
        there, back = s.pumps
        out, inn = (there, back) if peer is there.src else (back, there)
        try:
            moved = 0
            if mask & selectors.EVENT_READ:
                moved += out.step()
            if mask & selectors.EVENT_WRITE:
                moved += inn.step()
        except OSError as exc:
            self._end(s, "reset" if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT) else
                      f"error: {exc.strerror}")
            return
        if moved:
            s.active = time.monotonic()
        if there.done and back.done:
            self._end(s, "done")
            return
        if self.limits.max_bytes and there.bytes + back.bytes >= self.limits.max_bytes:
            self._end(s, "byte limit")
            return
        self._rewatch(s)

    # -- timers, endings --------------------------------------------------------------------------------------
    def _sweep(self, now: float) -> None:
        for peer in list(self.peers):
            if peer.session is None and peer.deadline and now >= peer.deadline:
                self._refuse(peer, "no complete request in time", "request timeout")
        for s in list(self.sessions.values()):
            if s.pumps is None and now - s.created >= self.limits.pairing_timeout:
                self._refuse_session(s, f"no peer joined nameplate {s.nameplate} within "
                                        f"{self.limits.pairing_timeout:g} s", "pairing timeout")
            elif s.pumps is not None and now - s.active >= self.limits.idle_timeout:
                self._end(s, "idle timeout")
        if self.stopping and (self.stopping < 0 or now - self.stopping >= self.limits.grace):
            for s in list(self.sessions.values()):
                self._end(s, "shutdown")

    def _refuse_session(self, s: _Session, why: str, how: str) -> None:
        for peer in s.peers.values():
            self._reply(peer, rp.Reply(rp.ST_REFUSED, why))
        self._end(s, how)

    def _refuse(self, peer: _Peer, why: str, how: str, *, counted: bool = True, nameplate: str = "") -> None:
        self._reply(peer, rp.Reply(rp.ST_REFUSED, why))
        line: dict[str, object] = {"event": "refused", "peer": peer.addr, "reason": how, "message": why}
        if nameplate:
            line["nameplate"] = nameplate
        self.log(line)
        if counted:
            self._drop(peer)
        else:
            peer.sock.close()

    def _drop(self, peer: _Peer) -> None:
        if peer not in self.peers:
            return
        self.peers.discard(peer)
        self._watch(peer, 0)
        left = self.per_ip.get(peer.ip, 1) - 1
        if left:
            self.per_ip[peer.ip] = left
        else:
            self.per_ip.pop(peer.ip, None)
        with contextlib.suppress(OSError):
            peer.sock.close()

    def _end(self, s: _Session, how: str) -> None:
        if self.sessions.get(s.nameplate) is not s:
            return
        del self.sessions[s.nameplate]
        now = time.monotonic()
        there = back = 0
        if s.pumps is not None:
            there, back = s.pumps[0].bytes, s.pumps[1].bytes
            for pump in s.pumps:
                pump.close()
        for peer in s.peers.values():
            self._drop(peer)
        self.log({
            "event": "session", "nameplate": s.nameplate, "end": how, "paired": s.pumps is not None,
            "bytes_sender_to_receiver": there, "bytes_receiver_to_sender": back,
            "seconds": round(now - (s.paired or s.created), 6), "waited": round((s.paired or now) - s.created, 6),
            "route": "splice",
            "peers": {rp.SIDE_NAMES[side]: peer.addr for side, peer in s.peers.items()},
        })


def _fmt(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_line(line: dict[str, object]) -> str:
    """The human form of a log dict (the --json form is the dict itself)."""
    ev = line.get("event")
    if ev == "listening":
        return f"zcopy relay: listening on {line['address']} (route splice)"
    if ev == "stopped":
        return "zcopy relay: stopped"
    if ev == "refused":
        plate = f" nameplate {line['nameplate']}" if "nameplate" in line else ""
        return f"zcopy relay: refused {line.get('peer', '')}{plate}: {line.get('message', line.get('reason'))}"
    peers = line.get("peers")
    shown = " ".join(f"{k}={v}" for k, v in peers.items()) if isinstance(peers, dict) else ""
    return (f"zcopy relay: session {line['nameplate']} {line['end']}: "
            f"sender→receiver {line['bytes_sender_to_receiver']} B, "
            f"receiver→sender {line['bytes_receiver_to_sender']} B, "
            f"{line['seconds']} s, route {line['route']}" + (f", {shown}" if shown else ""))


__all__ = ["PIPE_SIZE", "REQUEST_TIMEOUT_S", "Limits", "Relay", "format_line"]
