"""send/recv through `zcopy relay`: the existing session over a relay (parametrised with direct), short codes,
a wrong code, a relay killed mid-transfer then --resume with a new code, no listening socket on either side,
the relay's syscalls (payload only by splice) and a capture of its traffic (no plaintext by default)."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from zcopy.transfer import AuthError, ModeError, RemoteError, TransferError, send
from zcopy.transfer import codes as cd
from zcopy.transfer.pairing import WRONG_CODE

from .conftest import ZCOPY, assert_same_tree, make_tree, partials, snapshot

_plates = itertools.count(100)


def _code() -> str:
    return cd.make(str(next(_plates)))


class Way:
    """Start a receiver and send to it, directly or through a relay (with a sender-chosen code, so the receiver
    can wait first, as a user who types the code before the sender started would)."""

    def __init__(self, kind: str, start_receiver, start_relay) -> None:  # type: ignore[no-untyped-def]
        self.kind = kind
        self._start_receiver = start_receiver
        self.relay = start_relay() if kind == "relay" else None
        self.code = ""

    def receiver(self, dst: Path, **kw: object):  # type: ignore[no-untyped-def]
        if self.relay is not None:
            self.code = _code()
            kw.update(relay=self.relay.address, code=self.code)
        return self._start_receiver(dst, **kw)

    def send(self, rx, paths: list[Path], **kw: object):  # type: ignore[no-untyped-def]
        if self.relay is not None:
            return send(paths, relay=self.relay.address, code=self.code, **kw)  # type: ignore[arg-type]
        return send(paths, rx.address, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["direct", "relay"])
def way(request, start_receiver, start_relay) -> Way:  # type: ignore[no-untyped-def]
    return Way(request.param, start_receiver, start_relay)


@pytest.mark.parametrize("plain", [False, True])
def test_tree_arrives_identical(tmp_path: Path, way: Way, plain: bool) -> None:
    tree = make_tree(tmp_path / "src", big=1 << 20)
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = way.receiver(dst, plain=plain)
    res = way.send(rx, [tree], plain=plain)
    rres = rx.join()
    assert res.ok and rres.ok, (res, rres)
    assert_same_tree(tree, dst / "tree")
    assert res.via == rres.via == way.kind
    assert res.encryption == rres.encryption == ("none" if plain else "tls1.3")
    if way.relay is not None:
        assert res.code == way.code
        (line,) = way.relay.wait_for("session")
        assert line["end"] == "done" and line["route"] == "splice"
        # Every byte of the session went through the relay: at least the bodies, plus framing (and TLS).
        assert int(line["bytes_sender_to_receiver"]) > res.bytes_sent  # type: ignore[call-overload]


def test_resume_and_existing_files(tmp_path: Path, way: Way) -> None:
    tree = make_tree(tmp_path / "src", big=1 << 20)
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = way.receiver(dst)
    assert way.send(rx, [tree]).ok
    rx.join()
    (dst / "tree" / "big.bin").unlink()
    rx = way.receiver(dst)
    with pytest.raises(RemoteError, match="already exist"):
        way.send(rx, [tree])
    assert rx.join().error_code
    rx = way.receiver(dst)
    res = way.send(rx, [tree], resume=True)
    rx.join()
    assert res.ok and res.files == 1 and res.skipped == 14
    assert_same_tree(tree, dst / "tree")


def test_code_printed_before_pairing_and_relay_allocates_the_nameplate(tmp_path: Path, start_receiver,  # type: ignore[no-untyped-def]
                                                                      start_relay) -> None:
    relay = start_relay()
    (tmp_path / "f").write_bytes(b"hello")
    dst = tmp_path / "dst"
    dst.mkdir()
    seen: list[str] = []
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(send([tmp_path / "f"], relay=relay.address, on_code=seen.append)))
    t.start()
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        time.sleep(0.005)
    (code,) = seen  # known while the sender still waits for its receiver
    assert re.fullmatch(r"1-[a-z]+-[a-z]+", code) and cd.strength(code) == 16
    rx = start_receiver(dst, relay=relay.address, code=code.upper())  # typed in capitals: still the code
    t.join(30)
    assert rx.join().ok
    assert out[0].code == code and (dst / "f").read_bytes() == b"hello"  # type: ignore[attr-defined]


def test_wrong_code_fails_both_sides_and_writes_nothing(tmp_path: Path, start_receiver, start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay()
    tree = make_tree(tmp_path / "src", big=1 << 20)
    dst = tmp_path / "dst"
    dst.mkdir()
    code = _code()
    plate, _ = cd.parse(code)
    rx = start_receiver(dst, relay=relay.address, code=f"{plate}-wrong-guess")
    with pytest.raises(AuthError, match=WRONG_CODE):
        send([tree], relay=relay.address, code=code)
    res = rx.join()
    assert res.error == WRONG_CODE and res.via == "relay" and not res.ok
    assert os.listdir(dst) == []  # nothing written, not even a partial
    # The code is spent: the receiver's Receiver refuses a second session with it.
    with pytest.raises(ValueError, match="one session"):
        rx.rx.serve_once()


def test_plain_through_a_relay_only_when_both_ask(tmp_path: Path, start_receiver, start_relay) -> None:  # type: ignore[no-untyped-def]
    relay = start_relay()
    (tmp_path / "f").write_bytes(b"x" * 100)
    dst = tmp_path / "dst"
    dst.mkdir()
    code = _code()
    rx = start_receiver(dst, relay=relay.address, code=code)
    with pytest.raises(ModeError):
        send([tmp_path / "f"], relay=relay.address, code=code, plain=True)
    assert "--plain" in (rx.join().error or "")
    assert os.listdir(dst) == []


def test_library_refuses_mixed_arguments(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ValueError, match="either"):
        send([tmp_path / "f"])
    with pytest.raises(ValueError, match="token"):
        send([tmp_path / "f"], relay=("127.0.0.1", 9), token="t")
    with pytest.raises(cd.CodeError, match="nameplate"):
        send([tmp_path / "f"], relay=("127.0.0.1", 9), code="guitarist-revenge")


# -- the relay as a process: killed, traced, captured ---------------------------------------------------------
_LISTEN = re.compile(r'(?:listening on |"address": ")([0-9.]+):(\d+)')


def _spawn_relay(*args: str, prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    proc = subprocess.Popen([*prefix, *ZCOPY, "relay", "--listen", "127.0.0.1:0", "--pairing-timeout", "30", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = _LISTEN.search(line)
    if not m:
        proc.kill()
        raise AssertionError(f"relay did not start: {line!r} {proc.stderr.read()!r}")
    return proc, (m.group(1), int(m.group(2)))


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM to the relay itself (under strace, to strace's child), then its log."""
    pid = proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if proc.args[0] == "strace" and children.exists():  # type: ignore[index]
        kids = children.read_text().split()
        pid = int(kids[0]) if kids else pid
    os.kill(pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return err


def test_relay_killed_mid_transfer_then_resume_with_a_new_code(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(48 << 20)
    (src / "big.bin").write_bytes(data)
    (src / "small.txt").write_bytes(b"small\n")
    dst = tmp_path / "dst"
    dst.mkdir()
    proc, address = _spawn_relay()
    code = _code()
    rx = start_receiver(dst, relay=address, code=code, plain=True)
    killed: list[int] = []

    def progress(done: int, total: int) -> None:
        if done >= 16 << 20 and not killed:  # a third of the way: the relay dies under both sides
            proc.kill()
            proc.wait()
            killed.append(done)

    with pytest.raises((TransferError, OSError)):
        send([src], relay=address, code=code, plain=True, progress=progress)
    res = rx.join()
    assert killed and not res.ok
    assert not (dst / "src" / "big.bin").exists()  # nothing wrong published
    for name, v in snapshot(dst).items():
        if v[0] == "file":
            assert v[3] == (tmp_path / name).read_bytes()
    (part,) = [q for q in partials(dst) if q.name.endswith("big.bin.zcopy-part")]
    kept = part.read_bytes()
    assert 0 < len(kept) < len(data) and data.startswith(kept)
    # A new relay, a new code, --resume: completes from the kept prefix.
    proc2, address2 = _spawn_relay()
    try:
        code2 = _code()
        rx = start_receiver(dst, relay=address2, code=code2, plain=True)
        out = send([src], relay=address2, code=code2, plain=True, resume=True)
        assert rx.join().ok and out.ok
        assert out.bytes_resumed == len(kept) and out.bytes_sent == len(data) - len(kept) + len(b"small\n")
        assert (dst / "src" / "big.bin").read_bytes() == data
        assert not partials(dst)
    finally:
        _stop(proc2)


def _cli_pair(tmp_path: Path, address: tuple[str, int], *extra: str, trace: bool = False,
              recv_extra: tuple[str, ...] = ()) -> tuple[str, str, str, str]:
    """`zcopy send --relay` and `zcopy recv --relay CODE` as processes (optionally under strace for listen/bind);
    returns (send stdout, send stderr, recv stdout, recv stderr)."""
    relay = f"{address[0]}:{address[1]}"
    pre_s = ["strace", "-f", "-qq", "-e", "trace=listen", "-o", str(tmp_path / "send.trace")] if trace else []
    pre_r = ["strace", "-f", "-qq", "-e", "trace=listen", "-o", str(tmp_path / "recv.trace")] if trace else []
    snd = subprocess.Popen([*pre_s, *ZCOPY, "send", str(tmp_path / "src"), "--relay", relay, "--json", *extra],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert snd.stderr is not None
    code = ""
    lines = []
    while not code:
        line = snd.stderr.readline()
        assert line, f"send printed no code: {lines!r}"
        lines.append(line)
        m = re.search(r"code (\d+-[a-z]+-[a-z]+)", line)
        code = m.group(1) if m else ""
    try:
        rcv = subprocess.run([*pre_r, *ZCOPY, "recv", str(tmp_path / "dst"), "--relay", relay, code, "--json",
                              *extra, *recv_extra], capture_output=True, text=True, timeout=60)
        snd.wait(60)
        assert snd.stdout is not None
        sout, serr = snd.stdout.read(), snd.stderr.read()  # the same buffered reader that found the code
    finally:
        if snd.poll() is None:
            snd.kill()
            snd.wait()
    assert rcv.returncode == 0 and snd.returncode == 0, (rcv.stderr, serr)
    return sout, "".join(lines) + serr, rcv.stdout, rcv.stderr


@pytest.fixture
def cli_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "secret.txt").write_bytes(b"THE-PLAINTEXT-MARKER " * 20000)  # ~420 KiB: a FILE body, not a batch
    (src / "note.txt").write_bytes(b"THE-SMALL-MARKER\n")
    (tmp_path / "dst").mkdir()
    return src


def test_cli_send_and_recv_through_a_relay_open_no_listening_socket(tmp_path: Path, cli_tree: Path) -> None:
    import json
    import shutil

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (.ci/run installs it)")
    proc, address = _spawn_relay("--json")
    try:
        sout, serr, rout, _ = _cli_pair(tmp_path, address, trace=True)
    finally:
        log = _stop(proc)
    summary, received = json.loads(sout), json.loads(rout)
    assert summary["via"] == received["via"] == "relay" and summary["code"] and received["error"] is None
    assert "on the receiving machine: zcopy recv DIR --relay" in serr
    assert (tmp_path / "dst" / "src" / "secret.txt").read_bytes() == (cli_tree / "secret.txt").read_bytes()
    for side in ("send", "recv"):
        trace = (tmp_path / f"{side}.trace").read_text()
        assert "listen(" not in trace, f"{side} opened a listening socket:\n{trace}"
    sessions = [json.loads(line) for line in log.splitlines() if '"session"' in line]
    assert len(sessions) == 1 and sessions[0]["end"] == "done" and sessions[0]["route"] == "splice"


# With -yy strace names each descriptor: `5<TCP:[127.0.0.1:40000->127.0.0.1:41000]>`, `7<pipe:[1234]>`, ...
_IO = re.compile(r"^\d+\s+(read|write|recvfrom|sendto|recvmsg|sendmsg|readv|writev|splice)"
                 r"\((\d+)<([^>]*)>.*\)\s+=\s+(-?\d+)", re.M)


@pytest.mark.parametrize("plain", [False, True])
def test_relay_moves_payload_only_by_splice(tmp_path: Path, cli_tree: Path, plain: bool) -> None:
    import shutil

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (.ci/run installs it)")
    out = tmp_path / "relay.trace"
    proc, address = _spawn_relay(prefix=("strace", "-f", "-qq", "-yy", "-e",
                                         "trace=read,write,recvfrom,sendto,recvmsg,sendmsg,readv,writev,splice",
                                         "-o", str(out)))
    try:
        _cli_pair(tmp_path, address, *(["--plain"] if plain else []))
    finally:
        _stop(proc)
    assert (tmp_path / "dst" / "src" / "secret.txt").read_bytes() == (cli_tree / "secret.txt").read_bytes()
    calls = _IO.findall(out.read_text())
    spliced = sum(int(n) for name, _, _, n in calls if name == "splice" and int(n) > 0)
    # Every other read or write on a TCP socket (the clients'; fd 2 is the log, files are Python starting up).
    other = [(name, int(n)) for name, _, what, n in calls if name != "splice" and "TCP" in what and int(n) > 0]
    size = sum(f.stat().st_size for f in cli_tree.iterdir())
    assert spliced >= 2 * size  # every payload byte in (socket → pipe) and out (pipe → socket)
    # Outside splice the relay only reads requests (8 bytes and a nameplate) and writes its short replies: nothing
    # near a file's size, and no call larger than a request or a reply.
    assert other and all(n <= 64 for _, n in other), other
    assert sum(n for _, n in other) < 256, other


class _Capture:
    """A TCP forwarder in front of the relay that records every byte both ways (what a wire capture sees)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.seen = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(x, y), daemon=True).start()

    def _pipe(self, x: socket.socket, y: socket.socket) -> None:
        try:
            while data := x.recv(65536):
                with self.lock:
                    self.seen += data
                y.sendall(data)
            y.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("plain", [False, True])
def test_capture_of_relay_traffic_has_no_plaintext_by_default(tmp_path: Path, cli_tree: Path, plain: bool) -> None:
    proc, address = _spawn_relay()
    cap = _Capture(address)
    try:
        _, serr, _, rerr = _cli_pair(tmp_path, cap.address, *(["--plain"] if plain else []))
    finally:
        _stop(proc)
        cap.close()
    assert (tmp_path / "dst" / "src" / "note.txt").read_bytes() == b"THE-SMALL-MARKER\n"
    seen = bytes(cap.seen)
    assert len(seen) > 420_000
    markers = [b"THE-PLAINTEXT-MARKER", b"THE-SMALL-MARKER", b"secret.txt", b"note.txt"]
    if plain:  # the control: the same capture does see a --plain session, and both sides warned about it
        assert all(m in seen for m in markers)
        assert "relay (and anyone on the way) can read" in serr and "can read" in rerr
    else:
        assert not any(m in seen for m in markers)


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("splice is Linux-only")


def test_cli_relay_mistakes_are_clear_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ZCOPY_RELAY", "ZCOPY_TOKEN")}
    (tmp_path / "f").write_bytes(b"x")
    cases = [
        (["recv", str(tmp_path), "7-guitarist-revenge"], "needs --relay"),
        (["recv", str(tmp_path), "--relay", "127.0.0.1:9"], "needs the CODE"),
        (["recv", str(tmp_path), "--relay", "127.0.0.1:9", "guitarist-revenge"], "nameplate"),
        (["recv", str(tmp_path), "--relay", "127.0.0.1:9", "7-a", "8-b"], "one CODE"),
        (["recv", str(tmp_path), "--relay", "127.0.0.1:9", "7-a-b", "--token", "t"], "--token is not used"),
        (["send", str(tmp_path / "f"), "--code", "7-a-b"], "HOST:PORT"),
        (["send", str(tmp_path / "f"), "--relay", "127.0.0.1:9", "--code", "seven"], "nameplate"),
        (["relay", "--max-sessions", "0"], "more than 0"),
        (["relay", "--max-bytes", "lots"], "not a size"),
    ]
    for argv, want in cases:
        r = subprocess.run([*ZCOPY, *argv], capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 2, (argv, r.stderr)
        assert want in r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)
    # A relay nobody runs: a clear error naming the relay, no traceback.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    with held:
        port = held.getsockname()[1]
        r = subprocess.run([*ZCOPY, "send", str(tmp_path / "f"), "--relay", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 2 and "is `zcopy relay` running?" in r.stderr, r.stderr
        # The receiving side says the same (it said only "relay: Connection refused"); its session failed: exit 1.
        r = subprocess.run([*ZCOPY, "recv", str(tmp_path), "--relay", f"127.0.0.1:{port}", "7-guitarist-revenge"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"nothing listens on relay 127.0.0.1:{port} (is `zcopy relay` running?)" in r.stderr, r.stderr


def test_relay_out_of_descriptors_refuses_then_recovers(tmp_path: Path) -> None:
    """At its descriptor limit the relay stops accepting for a moment (instead of spinning on a readable listener),
    says so, and accepts again once descriptors are free."""
    import json

    proc = subprocess.Popen(["bash", "-c", 'ulimit -n 32 && exec "$@"', "relay", *ZCOPY, "relay", "--listen",
                             "127.0.0.1:0", "--json", "--max-per-address", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    m = _LISTEN.search(proc.stderr.readline())
    assert m, "relay did not start"
    address = (m.group(1), int(m.group(2)))
    held = []
    try:
        for _ in range(40):  # more than the limit: the last ones wait in the backlog
            held.append(socket.create_connection(address, timeout=10))
        line = json.loads(proc.stderr.readline())
        assert line["event"] == "refused" and line["reason"] == "out of descriptors", line
        for s in held:
            s.close()
        held = []
        ssock, _ = pairing_dial(address)  # accepted again once descriptors are free
        ssock.close()
    finally:
        for s in held:
            s.close()
        log = _stop(proc)
    # Paused, not spinning: a handful of these lines, where a loop on the readable listener writes thousands.
    assert log.count("out of descriptors") < 200


def pairing_dial(address: tuple[str, int]) -> tuple[socket.socket, str]:
    """Place a sender on the relay (allocate), returning once it is waiting."""
    from zcopy.relay import protocol as rp

    sock = socket.create_connection(address, timeout=10)
    sock.sendall(rp.Request(rp.OP_ALLOCATE, rp.SIDE_SENDER).encode())
    head = sock.recv(rp.REPLY_HEAD, socket.MSG_WAITALL)
    rep = rp.decode_reply(head, sock.recv(rp.reply_length(head), socket.MSG_WAITALL))
    assert rep.status == rp.ST_WAITING, rep
    return sock, rep.text


class _HostileRelay:
    """A relay run by an attacker: it pairs the two sides honestly and passes the SPAKE2 messages on (it cannot
    know the code), then terminates TLS with its own certificate towards each side and forwards the plaintext: the
    man in the middle a relay is best placed to be."""

    def __new__(cls, identity: Path):  # type: ignore[no-untyped-def]
        from .test_security import Mitm, _recv_exact

        class Hostile(Mitm):
            def _run(self) -> None:
                from zcopy.relay import protocol as rp

                conns = {}
                for _ in range(2):
                    c, _ = self.server.accept()
                    head = _recv_exact(c, rp.REQUEST_HEAD)
                    req = rp.decode_request(head + _recv_exact(c, rp.request_length(head) - rp.REQUEST_HEAD))
                    c.sendall(rp.Reply(rp.ST_WAITING, rp.waiting_text("7", 30)).encode())
                    conns[req.side] = c
                a, b = conns[rp.SIDE_SENDER], conns[rp.SIDE_RECEIVER]
                for c in (a, b):
                    c.sendall(rp.Reply(rp.ST_PAIRED).encode())
                for src, dst in ((a, b), (b, a)):  # SPAKE2 messages, untouched
                    head = _recv_exact(src, 7)
                    dst.sendall(head + _recv_exact(src, int.from_bytes(head[5:7], "big")))
                for src, dst in ((a, b), (b, a)):  # key confirmations, untouched
                    dst.sendall(_recv_exact(src, 32))
                head = _recv_exact(b, 6)  # the receiver's (empty) offer, then the sender's choice, untouched
                a.sendall(head + _recv_exact(b, int.from_bytes(head[4:6], "big") + 32))
                b.sendall(_recv_exact(a, 5 + 32))
                self.intercept(a, b)

        return Hostile(("127.0.0.1", 9), identity)


def test_a_hostile_relay_cannot_be_a_man_in_the_middle(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    from zcopy.transfer import tls
    from zcopy.transfer.errors import E_AUTH

    src = tmp_path / "src"
    src.mkdir()
    secret = b"SECRET-FILE-BYTES-" * 10_000
    (src / "f.bin").write_bytes(secret)
    dst = tmp_path / "dst"
    dst.mkdir()
    hostile = _HostileRelay(tls.ensure_identity(tmp_path / "relay-owner.pem"))
    code = _code()
    rx = start_receiver(dst, relay=hostile.address, code=code)
    with pytest.raises(TransferError) as info:  # the receiver's refusal (E_AUTH), or the sender's own check
        send([src], relay=hostile.address, code=code)
    res = rx.join()
    hostile.close()
    # The pairing succeeded (the relay passed SPAKE2 on), but the proofs bound to the certificate each side saw do
    # not verify through the relay's TLS: refused on both sides, nothing written, no file byte seen.
    assert info.value.code == E_AUTH and res.error_code == E_AUTH, (info.value, res.error)
    assert "man in the middle" in (res.error or "") and WRONG_CODE not in str(info.value)  # past the PAKE
    assert os.listdir(dst) == []
    assert secret[:40] not in bytes(hostile.up)


@pytest.mark.parametrize("reachable", [True, False])
def test_a_listening_receiver_offers_its_address_and_the_sender_goes_direct(tmp_path: Path, start_receiver,  # type: ignore[no-untyped-def]
                                                                           start_relay, reachable: bool) -> None:
    relay = start_relay()
    tree = make_tree(tmp_path / "src", big=2 << 20)
    dst = tmp_path / "dst"
    dst.mkdir()
    code = _code()
    held = socket.socket()  # bound, never listening: an offered address that refuses connections
    held.bind(("127.0.0.1", 0))
    with held:
        offer = True if reachable else [held.getsockname()]
        rx = start_receiver(dst, relay=relay.address, code=code, offer=offer)
        res = send([tree], relay=relay.address, code=code)
        rres = rx.join()
    assert res.ok and rres.ok, (res, rres)
    assert_same_tree(tree, dst / "tree")
    way = "direct" if reachable else "relay"
    assert res.via == rres.via == way and res.code == code
    (line,) = relay.wait_for("session")
    carried = int(line["bytes_sender_to_receiver"])  # type: ignore[call-overload]
    if reachable:  # the relay carried the pairing only: SPAKE2, the confirmations, the choice
        assert carried < 1024, line
    else:
        assert carried > res.bytes_sent, line


def test_cli_recv_listen_with_relay_offers_a_direct_connection(tmp_path: Path, cli_tree: Path) -> None:
    import json

    proc, address = _spawn_relay("--json")
    try:
        sout, serr, rout, rerr = _cli_pair(tmp_path, address, recv_extra=("--listen", "127.0.0.1:0"))
    finally:
        log = _stop(proc)
    summary, received = json.loads(sout), json.loads(rout)
    assert summary["via"] == received["via"] == "direct" and summary["code"]
    assert "offering 127.0.0.1:" in rerr and "code" in serr
    assert (tmp_path / "dst" / "src" / "secret.txt").read_bytes() == (cli_tree / "secret.txt").read_bytes()
    (session,) = [json.loads(line) for line in log.splitlines() if '"session"' in line]
    assert session["bytes_sender_to_receiver"] < 1024  # the relay carried the pairing, not the files
