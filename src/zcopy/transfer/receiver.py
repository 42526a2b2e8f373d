"""Receiver glue for `zcopy recv`: listens, runs one session at a time, and lands each file safely.

Routes, as reported in SessionResult.routes:
- `direct` (files above protocol.SMALL_FILE_MAX, the default where the file system does direct I/O): the body
  lands in a page-aligned buffer (received there in plain mode, decrypted there with TLS), is hashed there while
  hot, and goes to the disk by O_DIRECT: nothing is read back, and the page cache is left to the user's work.
- `splice` (plain mode with --cache, or where direct I/O is unavailable, e.g. tmpfs): socket → pipe → partial
  file with FileChannel.transfer_from, never in user space; the digest is computed afterwards over an mmap view.
- `readwrite` (small files in both modes; TLS with --cache): the bytes are in user space anyway (TLS decrypts
  there; a BATCH frame carries many small files), so they are hashed there and written with one pwrite.

Durability is batched: a file is written to a hidden partial next to its final name (0600, under an OFD lock),
verified against the sender's authenticated digest, given its mode and mtime, and queued. A queue of up to
PUBLISH_FILES files (or PUBLISH_BYTES) is made durable with one syncfs, then each partial is renamed to its final
name (never replacing a file that appeared meanwhile, unless --overwrite), each touched directory is fsynced once,
and one ACK frame reports the lot. A final name therefore only ever appears complete, verified and durable.
Every path is walked with dir_fd + O_NOFOLLOW below the target root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from zcopy import RouteUnavailable, routes
from zcopy.relay import protocol as rp
from zcopy.transfer import (
    certs,
    checksum,
    codes,
    handshake,
    pairing,
    partials,
    recv_done,
    recv_manifest,
    recv_plan,
    tls,
)
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import (
    E_INTERNAL,
    E_IO,
    E_NOSPACE,
    ConnectionDropped,
    ModeError,
    ProtocolError,
    TransferError,
    from_os_error,
)
from zcopy.transfer.recv_files import Files
from zcopy.transfer.recv_gate import AUTH_TIMEOUT, MAX_HANDSHAKES, MAX_SESSIONS, Busy, Claims, Deadline, Gate, Ticket
from zcopy.transfer.recv_publish import PUBLISH_BYTES, PUBLISH_FILES, Publisher
from zcopy.transfer.recv_tree import Tree
from zcopy.transfer.results import SessionResult
from zcopy.transfer.stream import PeerError, Stream

# After refusing a session, keep reading (and discarding) for up to this long before closing, so the sender
# reads our ERROR frame instead of losing it to the RST a close with unread data would send.
LINGER_S = 1.0
# Descriptors kept free of the session's partials and directories (socket, listener, splice pipe, the embedding
# program's own files).
_FD_RESERVE = 64
# recv_into buffer: a BATCH frame (~1 MiB) arrives in a few calls; TLS bodies are read in pieces of this size.
_RECV_BUFFER = 1 << 20


@dataclass(frozen=True)
class Policy:
    """What a Receiver lets one session do, handed to each session whole (sessions read nothing else of the
    Receiver). `token` may be replaced per session (a token derived by pairing through a relay)."""

    root: int  # the target directory's fd; sessions never close it
    plain: bool
    context: ssl.SSLContext | None  # TLS server context (None with plain)
    fingerprint: bytes  # SHA-256 of the certificate it presents (b"" with plain)
    token: bytes | None
    overwrite: bool
    links: bool
    cache: bool
    route: str | None
    timeout: float | None
    publish_files: int  # partials per publish batch (bounded by the descriptor limit)
    fd_budget: int  # descriptors a session may hold: queued partials + directory fds
    claims: Claims  # target paths running sessions write (shared by the receiver's sessions)


class Receiver:
    """Accept zcopy sessions on `listen` and land files under `directory`.

    Sessions run at once, each in a thread, up to `max_sessions` authenticated ones; connections still in their
    handshake count against a separate, small `max_handshakes`, and each has `auth_timeout` seconds in all to
    finish TLS and the token proofs, so idle or drip-feeding peers never hold a real sender up. Two sessions never
    write the same target path: the second is refused before it writes anything (and an OFD lock on each partial
    keeps two receiver processes apart too). Encrypted (TLS 1.3) unless `plain`, with the key pair
    `tls_cert`/`tls_key` or the one kept in the user's config directory (made on first use). `token` turns on HMAC
    challenge-response authentication bound to the certificate; `overwrite` allows replacing existing files;
    `links` accepts symlink entries; `cache` lands large files through the page cache (splice in plain mode)
    instead of by O_DIRECT. `route` forces the body route of large files in plain mode (e.g. "readwrite", a plain
    recv_into + pwrite, to compare); by default splice, with any fallback visible in each session's `routes`.

    With `relay` (and the sender's `code`, e.g. "7-guitarist-revenge") it listens on nothing: serve_once() dials
    the relay, waits there for the sender, runs SPAKE2 with the code (which stands in for `token`) and then the
    same session as a direct one; `address` is then the relay's. A code is good for one session. With `offer`
    it also listens on `listen` and, once paired, offers the sender that address (True) or the given ones (a
    list, e.g. a public address in front of a port forward); the sender connects there if it can (the result's
    `via` is then "direct") and keeps to the relay otherwise.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        listen: tuple[str, int] = ("127.0.0.1", 9000),
        *,
        relay: tuple[str, int] | None = None,
        code: str | None = None,
        offer: bool | Sequence[tuple[str, int]] = False,
        token: str | bytes | None = None,
        overwrite: bool = False,
        timeout: float | None = 60.0,
        route: str | None = None,
        plain: bool = False,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        links: bool = False,
        cache: bool = False,
        max_sessions: int = MAX_SESSIONS,
        max_handshakes: int = MAX_HANDSHAKES,
        auth_timeout: float | None = AUTH_TIMEOUT,
    ) -> None:
        routes.require(route, "socket", "file")
        if (relay is None) != (code is None):
            raise ValueError("a relay needs the sender's code, and a code needs a relay")
        if relay is not None and token is not None:
            raise ValueError("a token is not used through a relay: the code stands in for it")
        if code is not None:
            codes.parse(code)  # a mistyped code is refused before the relay is dialled
        self.relay = relay
        self.code = code
        if route not in (None, "readwrite") and not plain:
            raise RouteUnavailable(route, "an encrypted session decrypts every body in user space: --route only "
                                          "chooses a body route with --plain")
        if max_sessions < 1 or max_handshakes < 1:
            raise ValueError("max_sessions and max_handshakes must be at least 1")
        if auth_timeout is not None and auth_timeout <= 0:
            raise ValueError("auth_timeout must be positive (or None for no deadline)")
        self.directory = os.fspath(directory)
        self.fingerprint = ""
        self.max_sessions = max_sessions
        self.max_handshakes = max_handshakes
        self.auth_timeout = auth_timeout
        self.publish_files = _descriptor_budget(PUBLISH_FILES)
        # Descriptors a session may hold (queued partials + directory fds): the soft limit less a reserve for the
        # sockets, the listener, the pipes and whatever the embedding program keeps open, shared by the sessions
        # that may run at once.
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        fd_budget = 1 << 20 if soft == resource.RLIM_INFINITY else max(64, (soft - _FD_RESERVE) // max_sessions)
        context: ssl.SSLContext | None = None
        fp = b""
        if not plain:
            context, der = tls.server_context(tls_cert, tls_key)
            fp = certs.fingerprint(der)
            self.fingerprint = certs.fingerprint_text(der)
        # The target directory itself may be a symlink (the user named it); only what lies below it is policed.
        self._root = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.policy = Policy(
            root=self._root, plain=plain, context=context, fingerprint=fp,
            token=token.encode() if isinstance(token, str) else token, overwrite=overwrite, links=links,
            cache=cache, route=route, timeout=timeout, publish_files=min(self.publish_files, fd_budget // 2),
            fd_budget=fd_budget, claims=Claims())
        self._live: dict[int, SessionResult] = {}  # sessions past authentication, by thread id (see sessions())
        self._live_lock = threading.Lock()
        # close() from another thread wakes a serving loop through this pipe (closing a socket wakes no select).
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._closed = False
        self._serving = False
        self._listener: socket.socket | None = None
        self._offered: list[tuple[str, int]] = []
        if relay is not None and not offer:
            self.address: tuple[str, int] = relay
            return
        try:
            family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
            self._listener = socket.create_server(listen, family=family)
        except BaseException:
            for fd in (self._root, self._wake_r, self._wake_w):
                os.close(fd)
            raise
        host, port = self._listener.getsockname()[:2]
        self.address = (host, port)
        if relay is not None:
            self._offered = _offer_addresses(self.address) if isinstance(offer, bool) else list(offer)

    def _listening(self) -> socket.socket:
        if self._listener is None:
            raise ValueError("this receiver listens on nothing: it meets its sender through a relay")
        return self._listener

    def fileno(self) -> int:
        return self._listening().fileno()

    def accept(self) -> tuple[socket.socket, str]:
        """Wait for the next sender: its connection and "host:port" (then call handle())."""
        conn, peer = self._listening().accept()
        return conn, f"{peer[0]}:{peer[1]}"

    def serve_once(self, on_other: Callable[[SessionResult], None] | None = None) -> SessionResult:
        """Serve until one session has run (or was refused on its merits: a wrong token, a mode mismatch, a bad
        stream) and return its result. Connections that go away or time out before authenticating do not end
        it (each is reported to `on_other`), and a second sender that authenticates meanwhile is told the
        receiver is busy. Through a relay: pairing, then the one session the code is good for."""
        if self.relay is not None:
            return self._through_relay(self.relay)
        result = self._serve(on_other, once=True)
        assert result is not None
        return result

    def serve_forever(self, on_session: Callable[[SessionResult], None] | None = None) -> None:
        """Serve sessions at once (see the class) until interrupted; `on_session` gets each one's result, from
        the session's own thread."""
        if self.relay is not None:
            raise ValueError("a code is good for one session: call serve_once()")
        self._serve(on_session, once=False)

    def sessions(self) -> list[SessionResult]:
        """The results, still being filled in, of the sessions running now (past authentication)."""
        with self._live_lock:
            return list(self._live.values())

    def handle(self, conn: socket.socket, peer: str = "") -> SessionResult:
        """Run one session on a connection the caller accepted (closes it), under the auth deadline but no
        limits. Errors are reported to the sender and in the result, not raised."""
        return self._handle(conn, peer, Gate(1, 1).ticket())[0]

    def _through_relay(self, relay: tuple[str, int]) -> SessionResult:
        """Pairing, then the session: a refusal, a relay that went away or a wrong code is the result's error."""
        code, self.code = self.code, None
        if code is None:
            raise ValueError("this receiver's code was used already: a code is good for one session")
        t0 = time.perf_counter()
        where = f"relay {relay[0]}:{relay[1]}"
        try:
            sock, _ = pairing.dial(relay, rp.SIDE_RECEIVER, codes.parse(code)[0], timeout=self.policy.timeout)
        except (TransferError, OSError) as exc:
            return _failed(where, exc, t0)
        via = "relay"
        try:
            token = pairing.pake(sock, code, rp.SIDE_RECEIVER)
            pairing.send_offer(sock, token, self._offered)
            if pairing.read_choice(sock, token):  # the sender reached an offered address: the session runs there
                sock.close()
                sock, where, via = self._accept_offered()
        except (TransferError, OSError) as exc:
            sock.close()
            return _failed(where, exc, t0)
        result = self._handle(sock, where, Gate(1, 1).ticket(), dataclasses.replace(self.policy, token=token))[0]
        result.via = via
        result.seconds = time.perf_counter() - t0
        return result

    def _accept_offered(self) -> tuple[socket.socket, str, str]:
        """The sender's direct connection to the address this receiver offered (the token proofs that follow
        tell it from anyone else's)."""
        listener = self._listening()
        listener.settimeout(self.policy.timeout)
        try:
            conn, peer = listener.accept()
        except TimeoutError:
            raise TransferError("the sender chose the offered address but never connected", E_IO) from None
        conn.settimeout(None)
        return conn, f"{peer[0]}:{peer[1]}", "direct"

    def _handle(self, conn: socket.socket, peer: str, ticket: Ticket,
                policy: Policy | None = None) -> tuple[SessionResult, bool, bool]:
        """One session on its ticket; also whether it was admitted (authenticated, given a slot), and whether it
        ended on its merits (admitted, or refused for what the peer said) rather than lost, timed out or turned
        away busy."""
        deadline = Deadline(conn, self.auth_timeout)
        me = threading.get_ident()

        def authenticated(result: SessionResult) -> None:
            deadline.cancel()
            ticket.admit()  # raises Busy when every session slot is taken
            with self._live_lock:
                self._live[me] = result

        session = _Session(policy or self.policy, conn, authenticated)
        session.result.peer = peer
        session.result.via = "direct" if self.relay is None else "relay"
        t0 = time.perf_counter()
        try:
            session.run()
        finally:
            deadline.cancel()
            with self._live_lock:
                self._live.pop(me, None)
            ticket.release()
            session.close()
            session.st.sock.close()
            conn.close()
        lost = session.lost or deadline.expired or session.busy
        if deadline.expired and not session.admitted:
            session.result.error = (f"no authentication within {self.auth_timeout:g} s (--auth-timeout); "
                                    "connection closed")
        session.result.seconds = time.perf_counter() - t0
        return session.result, session.admitted, session.admitted or not lost

    def _serve(self, on_session: Callable[[SessionResult], None] | None, once: bool) -> SessionResult | None:
        """The accept loop: each connection in a thread of its own, admitted by a Gate. With `once`, return the
        session's result (see serve_once), after ending the connections still in their handshake."""
        gate = Gate(1 if once else self.max_sessions, self.max_handshakes)
        listener = self._listening()
        wake_r, wake_w = self._wake_r, self._wake_w
        done: list[SessionResult] = []
        conns: dict[socket.socket, threading.Thread] = {}
        lock = threading.Lock()

        def work(conn: socket.socket, peer: str, ticket: Ticket) -> None:
            try:
                result, admitted, merits = self._handle(conn, peer, ticket)
                # With once, the session that authenticated is the one; a refusal on its merits (a wrong token,
                # a bad stream) ends it too while no session runs. Lost and timed-out connections never do.
                ends = once and (admitted or (merits and gate.sessions == 0))
                if ends:
                    with lock:
                        done.append(result)
                    with contextlib.suppress(OSError):
                        os.write(wake_w, b"!")
                elif on_session is not None:
                    on_session(result)
            finally:
                with lock:
                    conns.pop(conn, None)

        with self._live_lock:
            if self._closed:
                raise OSError(errno.EBADF, "the receiver is closed")
            if self._serving:
                raise RuntimeError("this receiver is already serving in another thread")
            self._serving = True
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        listener.setblocking(False)
        try:
            while True:
                for key, _ in sel.select():
                    if key.fileobj == wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 4096)
                        if self._closed:
                            raise OSError(errno.EBADF, "the receiver was closed while serving")
                        with lock:
                            if done:
                                return done[0]
                        continue
                    try:
                        conn, addr = listener.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    conn.setblocking(True)
                    ticket = gate.enter()
                    if ticket is None:  # too many connections in their handshake: this one is not heard
                        conn.close()
                        continue
                    t = threading.Thread(target=work, args=(conn, f"{addr[0]}:{addr[1]}", ticket), daemon=True,
                                         name=f"zcopy-recv {addr[0]}:{addr[1]}")
                    with lock:
                        conns[conn] = t
                    t.start()
        finally:
            with contextlib.suppress(OSError):
                listener.setblocking(True)
            sel.close()
            with lock:
                left = list(conns.items())
            for conn, _ in left:  # whoever is still connected (in its handshake, with once) is let go
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            for _, t in left:
                t.join(5)
            with self._live_lock:
                self._serving = False
                if self._closed:
                    os.close(wake_r)
                    os.close(wake_w)

    def close(self) -> None:
        with self._live_lock:
            if not self._closed:
                self._closed = True
                if self._serving:  # a serving loop in another thread ends, and closes the pipe
                    os.write(self._wake_w, b"!")
                else:
                    os.close(self._wake_r)
                    os.close(self._wake_w)
        if self._listener is not None:
            self._listener.close()
        if self._root >= 0:
            os.close(self._root)
            self._root = -1

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _descriptor_budget(want: int) -> int:
    """How many partials a publish batch may hold open: `want` if the soft RLIMIT_NOFILE allows twice that
    (raised toward the hard limit if needed), else half the soft limit, at least 64."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * want
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft >= need:
        return want
    return max(64, soft // 2)



def _space_held(root: int) -> str:
    """For a disk-full error: which partials kept for --resume hold space under the target, and how to drop them."""
    found, more = partials.find(root)
    if not found:
        return ""
    mib = sum(f.size for f in found) / (1 << 20)
    named = ", ".join(f"{os.fsdecode(f.path)} ({f.size / (1 << 20):.1f} MiB)" for f in found[:3])
    rest = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return (f"; partial files kept for --resume hold {mib:.1f} MiB{' or more' if more else ''} here: {named}{rest}; "
            "`zcopy recv DIR --clean-partials` drops them (so does sending them again without --resume)")


def _offer_addresses(bound: tuple[str, int]) -> list[tuple[str, int]]:
    """What a receiver listening on `bound` offers: that address, or, bound to every interface, this host's
    addresses (loopback last, for a sender on the same machine)."""
    host, port = bound
    if host not in ("0.0.0.0", "::"):
        return [bound]
    try:
        ips = {str(ai[4][0]) for ai in socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)}
    except OSError:
        ips = set()
    loopback = "::1" if host == "::" else "127.0.0.1"
    return [(ip, port) for ip in sorted(ips) if not ip.startswith("127.") and ip != "::1"] + [(loopback, port)]


def _failed(peer: str, exc: TransferError | OSError, t0: float) -> SessionResult:
    """A session that ended in its pairing phase: nothing was received, nothing written."""
    if isinstance(exc, TransferError):
        message, code = str(exc), exc.code
    elif isinstance(exc, ConnectionRefusedError):  # as `zcopy send --relay` says it
        message, code = f"nothing listens on {peer} (is `zcopy relay` running?)", E_IO
    else:
        message, code = f"relay: {exc.strerror or exc}", E_IO
    return SessionResult(peer=peer, error=message, error_code=code, via="relay",
                         seconds=time.perf_counter() - t0)


class _Session:
    """One session on an accepted connection, phase by phase: authentication (handshake), manifest, plan,
    files, done. Errors are turned into the result (and an ERROR frame to the sender) by run()."""

    def __init__(self, policy: Policy, conn: socket.socket,
                 on_authenticated: Callable[[SessionResult], None] | None = None) -> None:
        self.policy = policy
        self.on_authenticated = on_authenticated
        self.st = Stream(conn, "sender", exact=True, buffer_size=_RECV_BUFFER,
                         on_eof=ConnectionDropped("the sender closed the connection in the middle of the session"))
        self.result = SessionResult(encryption="none" if policy.plain else "tls1.3")
        self.tree = Tree(policy.root, policy.fd_budget)
        self.pub = Publisher(self.st, self.tree, self.result, overwrite=policy.overwrite,
                             batch_files=policy.publish_files)
        self.admitted = False  # authenticated and given a session slot
        self.busy = False  # authenticated, but every session slot was taken
        self.lost = False  # the connection failed (EOF, reset, timeout, TLS), rather than the sender's word
        self.claimed: frozenset[tuple[bytes, ...]] = frozenset()

    def close(self) -> None:
        self.policy.claims.release(self.claimed)
        self.claimed = frozenset()
        self.pub.close()
        self.tree.close()

    def run(self) -> None:
        try:
            self.st.sock.settimeout(self.policy.timeout)
            self._run()
        except ModeError as exc:
            self._refuse(exc.code, str(exc), reply=False)  # the sender read our OPEN and says so itself
        except Busy as exc:
            self.busy = True
            self._refuse(exc.code, str(exc))
        except TransferError as exc:
            self.lost = isinstance(exc, ConnectionDropped)
            message = str(exc) + (_space_held(self.policy.root) if exc.code == E_NOSPACE else "")
            self._refuse(exc.code, message, reply=not isinstance(exc, PeerError))
        except ssl.SSLError as exc:
            self.lost = True
            self._refuse(E_IO, f"TLS failed: {exc.reason or exc}", reply=False)
        except (ConnectionError, TimeoutError) as exc:
            self.lost = True
            self._refuse(E_IO, f"connection lost: {exc.strerror or exc}", reply=False)
        except OSError as exc:
            err = from_os_error(exc)
            self._refuse(err.code, str(err))
        except RouteUnavailable as exc:  # a forced route the kernel refused for this socket or file
            self._refuse(E_IO, str(exc))
        except Exception as exc:  # a bug: still tell the sender, then let it surface
            self._refuse(E_INTERNAL, f"internal error: {exc!r}")
            raise

    def _refuse(self, code: int, message: str, reply: bool = True) -> None:
        self.result.error = message
        self.result.error_code = code
        if not reply:
            return
        conn = self.st.sock
        with contextlib.suppress(OSError, ValueError):
            conn.sendall(p.Error(code, message).encode())
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(LINGER_S)
            deadline = time.monotonic() + LINGER_S
            while time.monotonic() < deadline and conn.recv_into(self.st.buf):
                pass

    def _run(self) -> None:
        pol = self.policy
        agreed = handshake.receiver(self.st, token=pol.token, plain=pol.plain, context=pol.context,
                                    fingerprint=pol.fingerprint)
        if self.on_authenticated is not None:
            self.on_authenticated(self.result)
        self.admitted = True
        self.pub.key = agreed.key
        self.result.checksum = checksum.NAMES[agreed.algo]
        manifest = recv_manifest.read(self.st, agreed, links=pol.links)
        # Nothing is written before every file and link of this manifest is ours alone.
        self.claimed = pol.claims.claim(parts for e, parts in zip(manifest.entries, manifest.parts, strict=True)
                                        if not e.is_dir)
        self.result.bytes_total = sum(e.size for e in manifest.entries if e.is_file)
        plan = recv_plan.make(self.st, agreed, manifest, self.tree, self.pub, self.result, overwrite=pol.overwrite)
        files = Files(self.st, agreed, manifest, plan, self.tree, self.pub, self.result, plain=pol.plain,
                      cache=pol.cache, route=pol.route)
        while True:
            ev = self.st.next()
            if isinstance(ev, p.Batch):
                files.batch(ev)
            elif isinstance(ev, p.FileStart):
                files.file(ev)
            elif isinstance(ev, p.Done):
                recv_done.finish(self.st, ev, agreed.key, manifest, files, self.tree, self.pub, self.result)
                return
            else:  # the decoder's order table admits nothing else here
                raise ProtocolError(f"unexpected {type(ev).__name__}")


__all__ = ["PUBLISH_BYTES", "PUBLISH_FILES", "ConnectionDropped", "Policy", "Receiver", "SessionResult"]
