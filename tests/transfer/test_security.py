"""Encryption and authentication on the wire: a relay between sender and receiver sees, alters, or impersonates.

Every relay here is a real TCP forwarder on 127.0.0.1 (threads), so the sender and receiver run unmodified.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from zcopy.transfer import ModeError, Receiver, RemoteError, TransferError, send, tls
from zcopy.transfer import protocol as p
from zcopy.transfer.certs import CertificateError, check_validity, validity
from zcopy.transfer.errors import E_AUTH, E_MODE
from zcopy.transfer.tls import TlsSetupError

from .conftest import ZCOPY, assert_same_tree, spawn_recv

SECRET = b"TOP-SECRET-CONTENT-0123456789" * 40
NAME = "very-private-name.txt"
# Long enough that ciphertext cannot contain it by chance (a 3-byte token would, in a few MB, one time in three).
TOKEN = "token-that-must-never-be-on-the-wire"


def _tree(root: Path) -> Path:
    tree = root / "confidential"
    (tree / "inner").mkdir(parents=True)
    (tree / NAME).write_bytes(SECRET)
    (tree / "inner" / "large.bin").write_bytes(SECRET * 300)  # > 64 KiB: the FILE path, not a BATCH
    return tree


class Relay:
    """Forward one connection to `target`, recording what each direction carried; optionally flip the byte at
    offset `flip` of the sender → receiver stream."""

    def __init__(self, target: tuple[str, int], flip: int | None = None) -> None:
        self.target = target
        self.flip = flip
        self.up = bytearray()  # sender → receiver
        self.down = bytearray()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bytearray, flip: int | None) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if flip is not None and len(record) <= flip < len(record) + len(data):
                    i = flip - len(record)
                    data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
                record += data
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _run(self) -> None:
        a, _ = self.server.accept()
        b = socket.create_connection(self.target)
        t = threading.Thread(target=self._pump, args=(b, a, self.down, None))
        t.start()
        self._pump(a, b, self.up, self.flip)
        t.join()
        a.close()
        b.close()

    def close(self) -> None:
        self.thread.join(30)
        self.server.close()


def _serve(rx: Receiver) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(rx.serve_once()), daemon=True)
    t.start()
    return t, out


@pytest.mark.parametrize("plain", [False, True])
def test_contents_and_names_are_on_the_wire_only_with_plain(tmp_path: Path, plain: bool) -> None:
    tree = _tree(tmp_path / "src")
    dst = tmp_path / "dst"
    dst.mkdir()
    with Receiver(dst, ("127.0.0.1", 0), plain=plain, token=TOKEN) as rx:
        t, _ = _serve(rx)
        relay = Relay(rx.address)
        assert send([tree], relay.address, plain=plain, token=TOKEN).ok
        t.join(30)
        relay.close()
    assert_same_tree(tree, dst / "confidential")
    wire = bytes(relay.up + relay.down)
    seen = [s for s in (SECRET[:40], NAME.encode(), b"confidential", TOKEN.encode()) if s in wire]
    if plain:  # trusted-network mode: names and contents cross in the clear (the token never does)
        assert seen == [SECRET[:40], NAME.encode(), b"confidential"]
    else:
        assert seen == []
        assert len(relay.up) > len(SECRET) * 301  # the bytes did cross, encrypted


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("where", ["manifest", "body"])
def test_a_flipped_byte_fails_the_session_and_publishes_nothing(tmp_path: Path, plain: bool, where: str) -> None:
    tree = _tree(tmp_path / "src")
    dst = tmp_path / "dst"
    dst.mkdir()
    # Learn the clean stream first, then flip one byte of it in a second session.
    clean_dst = tmp_path / "clean"
    clean_dst.mkdir()
    with Receiver(clean_dst, ("127.0.0.1", 0), plain=plain, token="tok") as rx:
        t, _ = _serve(rx)
        relay = Relay(rx.address)
        assert send([tree], relay.address, plain=plain, token="tok").ok
        t.join(30)
        relay.close()
    up = bytes(relay.up)
    if plain:  # the exact byte: in the manifest (a name) or in the small file's body
        flip = up.index(NAME.encode()) if where == "manifest" else up.index(SECRET[:40]) + 7
    else:  # inside TLS records: early (around the manifest) or late (bodies); either breaks a record's tag
        flip = len(up) // 40 if where == "manifest" else len(up) - 2000
    with Receiver(dst, ("127.0.0.1", 0), plain=plain, token="tok") as rx:
        t, out = _serve(rx)
        relay = Relay(rx.address, flip=flip)
        try:
            res = send([tree], relay.address, plain=plain, token="tok")
            ok = res.ok
        except TransferError:
            ok = False
        t.join(30)
        relay.close()
    assert not ok
    rres = out[0]
    assert not rres.ok  # type: ignore[attr-defined]
    if plain and where == "body":
        # The altered file (the first to carry SECRET: inner/large.bin) is refused: its digest, authenticated by
        # the session key, does not match ...
        assert [f["error"] for f in rres.failed] == [  # type: ignore[attr-defined]
            "confidential/inner/large.bin: checksum mismatch, not published"]
        assert not (dst / "confidential" / "inner" / "large.bin").exists()
    else:
        # ... and anything else altered ends the session before a single file is published.
        names = [q.name for q in dst.rglob("*") if q.is_file()]
        assert not [n for n in names if not n.endswith(".zcopy-part")], names


def test_wrong_token_fails_before_any_file_byte_moves(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "src")
    dst = tmp_path / "dst"
    dst.mkdir()
    with Receiver(dst, ("127.0.0.1", 0), token="right") as rx:
        t, out = _serve(rx)
        relay = Relay(rx.address)
        with pytest.raises(RemoteError, match="wrong token") as info:
            send([tree], relay.address, token="wrong")
        t.join(30)
        relay.close()
    assert info.value.code == E_AUTH and out[0].error_code == E_AUTH  # type: ignore[attr-defined]
    assert list(dst.iterdir()) == []
    # Handshake, HELLO, AUTH, then the manifest the sender had already queued: no body bytes at all.
    assert len(relay.up) < len(SECRET)


class Mitm(Relay):
    """A man in the middle who terminates TLS with his own certificate on each side and forwards the plaintext."""

    def __init__(self, target: tuple[str, int], identity: Path) -> None:
        self.ctx, _ = tls.server_context(identity)
        super().__init__(target)

    def _run(self) -> None:
        a, _ = self.server.accept()
        b = socket.create_connection(self.target)
        self.intercept(a, b)

    def intercept(self, a: socket.socket, b: socket.socket) -> None:
        """Between sender `a` and receiver `b`: pass OPEN on, then terminate TLS on each side and forward."""
        opening = len(p.encode_preamble() + p.Open(p.M_TLS).encode())
        b_open = _recv_exact(b, opening)
        a.sendall(b_open)
        b.sendall(_recv_exact(a, opening))
        try:
            ta = self.ctx.wrap_socket(a, server_side=True)
            tb = tls.client_context().wrap_socket(b)
        except OSError:
            a.close()
            b.close()
            return
        # One SSL object must not be read in one thread while written in another (OpenSSL objects are not
        # thread-safe, and CPython releases the GIL around SSL_read/SSL_write): each TLS socket gets a lock, and
        # reads wait in short slices so the other direction can write in between.
        locks = {ta: threading.Lock(), tb: threading.Lock()}
        t = threading.Thread(target=self._tls_pump, args=(tb, ta, self.down, locks))
        t.start()
        self._tls_pump(ta, tb, self.up, locks)
        t.join()
        ta.close()
        tb.close()

    @staticmethod
    def _tls_pump(src: ssl.SSLSocket, dst: ssl.SSLSocket, record: bytearray, locks: dict[Any, threading.Lock]) -> None:
        while True:
            with locks[src]:
                src.settimeout(0.02)
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
            if not data:
                break
            record += data
            with locks[dst]:
                dst.settimeout(10)
                try:
                    dst.sendall(data)
                except OSError:
                    break
        with locks[dst], contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk
        out += chunk
    return out


def test_a_man_in_the_middle_with_his_own_certificate_cannot_complete_a_session(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "src")
    dst = tmp_path / "dst"
    dst.mkdir()
    mitm_identity = tls.ensure_identity(tmp_path / "mitm.pem")
    with Receiver(dst, ("127.0.0.1", 0), token="tok") as rx:
        t, out = _serve(rx)
        mitm = Mitm(rx.address, mitm_identity)
        with pytest.raises(TransferError) as info:
            send([tree], mitm.address, token="tok")
        t.join(30)
        mitm.close()
    # The sender's proof was bound to the MITM's certificate, the receiver checks it against its own.
    assert info.value.code == E_AUTH
    assert out[0].error_code == E_AUTH  # type: ignore[attr-defined]
    assert list(dst.iterdir()) == []
    assert SECRET[:40] not in bytes(mitm.up)  # he saw the handshake and the manifest's start, no file byte


def test_plain_on_one_side_only_is_refused_on_both_with_a_clear_message(tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("x")
    dst = tmp_path / "dst"
    dst.mkdir()
    for rx_plain in (False, True):
        with Receiver(dst, ("127.0.0.1", 0), plain=rx_plain) as rx:
            t, out = _serve(rx)
            with pytest.raises(ModeError, match="--plain") as info:
                send([src], rx.address, plain=not rx_plain)
            t.join(30)
        assert info.value.code == E_MODE
        assert out[0].error_code == E_MODE and "--plain" in (out[0].error or "")  # type: ignore[attr-defined]
    assert list(dst.iterdir()) == []
    # The same through the CLI: both exit 1, both say what to change.
    recv, port = spawn_recv(dst, "--once")
    r = subprocess.run([*ZCOPY, "send", str(src), f"127.0.0.1:{port}", "--plain", "--json"], capture_output=True,
                       text=True, timeout=30)
    _, rerr = recv.communicate(timeout=30)
    assert r.returncode == 1 and recv.returncode == 1
    assert json.loads(r.stdout)["code"] == E_MODE
    assert "drop --plain" in r.stderr and "start the receiver with --plain" in rerr
    assert "Traceback" not in r.stderr + rerr


def _expired_identity(tmp: Path) -> Path:
    """A self-signed certificate valid for one day in 2020 (openssl ca can set past dates; req cannot)."""
    tmp.mkdir()
    (tmp / "index.txt").write_text("")
    (tmp / "serial").write_text("01\n")
    (tmp / "ca.cnf").write_text("[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n"
                                "serial = serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n")
    run = {"cwd": tmp, "check": True, "capture_output": True}
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "k.pem", "-out", "r.csr", "-subj", "/CN=old"], **run)  # type: ignore[call-overload]
    subprocess.run(["openssl", "ca", "-batch", "-selfsign", "-config", "ca.cnf", "-keyfile", "k.pem", "-in", "r.csr",
                    "-out", "c.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z"], **run)  # type: ignore[call-overload]
    return tmp


def test_expired_or_foreign_certificates_are_refused(tmp_path: Path) -> None:
    old = _expired_identity(tmp_path / "old")
    # The receiver refuses to start with an expired certificate, or a key that is not the certificate's.
    with pytest.raises(TlsSetupError, match="expired on 2020-01-02"):
        Receiver(tmp_path, ("127.0.0.1", 0), tls_cert=old / "c.pem", tls_key=old / "k.pem")
    other = tls.ensure_identity(tmp_path / "other.pem")
    with pytest.raises(TlsSetupError, match="cannot load"):
        Receiver(tmp_path, ("127.0.0.1", 0), tls_cert=other, tls_key=old / "k.pem")
    r = subprocess.run([*ZCOPY, "recv", str(tmp_path), "--once", "--tls-cert", str(old / "c.pem"), "--tls-key",
                        str(old / "k.pem")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "expired" in r.stderr and "Traceback" not in r.stderr
    # A receiver that presents one anyway (here a bare TLS server) is refused by the sender before HELLO.
    import ssl

    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(old / "c.pem", old / "k.pem")
    with socket.create_server(("127.0.0.1", 0)) as fake:

        def serve() -> None:
            conn, _ = fake.accept()
            with conn:
                conn.sendall(p.encode_preamble() + p.Open(p.M_TLS).encode())
                _recv_exact(conn, 12)
                with contextlib.suppress(OSError), sctx.wrap_socket(conn, server_side=True) as s:
                    s.recv(100)

        t = threading.Thread(target=serve)
        t.start()
        src = tmp_path / "f.txt"
        src.write_text("x")
        with pytest.raises(TransferError, match="receiver's certificate expired"):
            send([src], fake.getsockname())
        t.join(30)


def test_certificate_validity_is_read_from_der() -> None:
    identity = tls.default_identity()
    ctx, der = tls.server_context()  # made on first use in this session's throwaway config dir
    del ctx
    assert identity.exists() and (identity.stat().st_mode & 0o777) == 0o600
    not_before, not_after = validity(der)
    assert datetime.timedelta(days=3649) < not_after - not_before < datetime.timedelta(days=3651)
    check_validity(der, "x")
    with pytest.raises(CertificateError, match="expired"):
        check_validity(der, "x", now=not_after + datetime.timedelta(seconds=1))
    with pytest.raises(CertificateError, match="not valid before"):
        check_validity(der, "x", now=not_before - datetime.timedelta(seconds=1))
    with pytest.raises(CertificateError, match="malformed"):
        validity(der[:40])
    # The same identity is reused, not regenerated, by the next receiver.
    before = identity.read_bytes()
    tls.server_context()
    assert identity.read_bytes() == before
    assert os.stat(identity.parent).st_mode & 0o077 == 0


def test_a_pinned_fingerprint_authenticates_the_receiver_without_a_token(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "src")
    dst = tmp_path / "dst"
    dst.mkdir()
    with Receiver(dst, ("127.0.0.1", 0)) as rx:  # no token: only the pin can tell this receiver from another
        t, _ = _serve(rx)
        assert send([tree], rx.address, fingerprint=rx.fingerprint).ok
        t.join(30)
    assert_same_tree(tree, dst / "confidential")
    # A man in the middle with his own certificate is refused before HELLO, even with no token to catch him.
    dst2 = tmp_path / "dst2"
    dst2.mkdir()
    with Receiver(dst2, ("127.0.0.1", 0)) as rx:
        t, _ = _serve(rx)
        mitm = Mitm(rx.address, tls.ensure_identity(tmp_path / "mitm.pem"))
        with pytest.raises(TransferError, match="not the pinned"):
            send([tree], mitm.address, fingerprint=rx.fingerprint)
        t.join(30)
        mitm.close()
    assert list(dst2.iterdir()) == []
    assert SECRET[:40] not in bytes(mitm.up) and b"confidential" not in bytes(mitm.up)
    r = subprocess.run([*ZCOPY, "send", str(tree), "127.0.0.1:9", "--plain", "--fingerprint", "SHA256:00"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "needs TLS" in r.stderr and "Traceback" not in r.stderr
    # A mistyped pin (the hex without its SHA256: prefix) is refused before connecting, not taken for an attack.
    short = rx.fingerprint.split(":", 1)[1]
    r = subprocess.run([*ZCOPY, "send", str(tree), "127.0.0.1:9", "--fingerprint", short],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "is not a certificate fingerprint" in r.stderr and "Traceback" not in r.stderr
