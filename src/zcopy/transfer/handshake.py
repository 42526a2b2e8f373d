"""The authentication phase of a send/recv session, both sides: preamble and OPEN in the clear, the TLS 1.3
handshake (unless both run --plain), HELLO/WELCOME, the token proofs bound to the receiver's certificate, and the
session key (docs/protocol.md, "OPEN" and "Integrity").

What comes before it (a direct TCP connection, or pairing through a relay with a PAKE-derived token) and after it
(manifest, plan, files, done) lives elsewhere; each side's glue calls `sender()` or `receiver()` once.
"""

from __future__ import annotations

import secrets
import ssl
from dataclasses import dataclass

from zcopy.transfer import certs, checksum, tls
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import E_IO, E_MODE, E_UNSUPPORTED, AuthError, ModeError, TransferError
from zcopy.transfer.stream import Stream


@dataclass
class Agreed:
    """What both sides settled on: the session key, the checksum, the flags, and the transcripts the manifest
    (sender → receiver) and plan (receiver → sender) MACs continue."""

    key: bytes
    algo: int
    features: int
    flags: int  # the sender's HELLO flags (H_RESUME, H_LINKS)
    manifest: p.Transcript
    plan: p.Transcript
    certificate: str = ""  # the receiver certificate's fingerprint text (sender side, TLS only)
    first: p.Event | None = None  # receiver side: the first frame after authentication (a MANIFEST chunk...)

    @property
    def resume(self) -> bool:
        return bool(self.flags & p.H_RESUME) and bool(self.features & p.F_RESUME)


def _greet(st: Stream, frame: bytes, kind: type[p.Message]) -> tuple[p.Transcript, p.Message, p.Transcript]:
    """Send our greeting (HELLO or WELCOME) and read the peer's: each starts the transcript its side's MAC will
    cover (the manifest's for HELLO, the plan's for WELCOME)."""
    ours = p.Transcript()
    ours.add(frame[p.HEADER_SIZE :])
    st.send(frame)
    msg = st.expect(kind)
    theirs = p.Transcript()
    theirs.add(st.dec.last_payload)
    return ours, msg, theirs


# -- sender -----------------------------------------------------------------------------------------------------
def _sender_open(st: Stream, plain: bool, pin: str | None) -> tuple[bytes, str]:
    """Preamble and OPEN in the clear, then (unless plain) the TLS handshake; the receiver's certificate
    fingerprint (b"" in plain mode) and its text."""
    mode = p.M_PLAIN if plain else p.M_TLS
    st.send(p.encode_preamble() + p.Open(mode).encode())
    theirs = st.expect(p.Open, exact=True)
    assert isinstance(theirs, p.Open)
    if theirs.mode != mode:
        if plain:
            raise ModeError("the receiver is encrypted (TLS, the default) and this sender has --plain: drop "
                            "--plain here, or start `zcopy recv --plain` for a trusted network", E_MODE)
        raise ModeError("the receiver runs with --plain (unencrypted): add --plain here too if the network "
                        "is trusted, or restart the receiver without --plain", E_MODE)
    if plain:
        return b"", ""
    tsock = tls.client_context().wrap_socket(st.sock, server_hostname=None)
    st.sock = tsock
    der = tls.peer_certificate(tsock)
    try:
        certs.check_validity(der, "the receiver's")
    except certs.CertificateError as exc:
        raise TransferError(str(exc), E_IO) from None
    text = certs.fingerprint_text(der)
    if pin is not None and pin.strip().lower() != text.lower():
        raise AuthError(f"the receiver's certificate is {text}, not the pinned {pin}: "
                        "refused (another receiver, or a man in the middle)")
    return certs.fingerprint(der), text


def sender(st: Stream, *, token: bytes | None, algo: int, flags: int, plain: bool, pin: str | None) -> Agreed:
    """The sender's side: raises AuthError, ModeError or TransferError (E_UNSUPPORTED) when it cannot agree."""
    fp, text = _sender_open(st, plain, pin)
    nonce = secrets.token_bytes(p.NONCE_SIZE)
    mt, welcome, pt = _greet(st, p.Hello(p.FEATURES, nonce, algo, flags).encode(), p.Welcome)
    assert isinstance(welcome, p.Welcome)
    features = p.FEATURES & welcome.features
    need = p.ALGO_FEATURE[algo]
    if need and not features & need:
        raise TransferError(f"the receiver does not offer checksum {checksum.NAMES[algo]}", E_UNSUPPORTED)
    if flags & p.H_RESUME and not features & p.F_RESUME:
        raise TransferError("the receiver does not offer resume", E_UNSUPPORTED)
    if welcome.auth_required:
        if token is None:
            raise AuthError("the receiver requires a token (--token or ZCOPY_TOKEN)")
        st.send(p.Auth(p.sender_proof(token, nonce, welcome.nonce, fp)).encode())
        ok = st.expect(p.AuthOk)
        assert isinstance(ok, p.AuthOk)
        if not p.proof_ok(p.receiver_proof(token, nonce, welcome.nonce, fp), ok.mac):
            raise AuthError("the receiver could not prove it knows the token (wrong token, or a man in the middle)")
    elif token is not None:
        # We were given a token, so we expect to talk to a receiver that knows it; one that does not ask
        # for it cannot prove it, and may be an impostor.
        raise AuthError("the receiver does not require a token, so it cannot prove it knows ours")
    key = p.session_key(token, nonce, welcome.nonce, fp)
    return Agreed(key, algo, features, flags, mt, pt, certificate=text)


# -- receiver ---------------------------------------------------------------------------------------------------
def _receiver_open(st: Stream, plain: bool, context: ssl.SSLContext | None) -> None:
    """Preamble and OPEN both ways in the clear; then, unless plain, the TLS handshake."""
    mode = p.M_PLAIN if plain else p.M_TLS
    st.send(p.encode_preamble() + p.Open(mode).encode())
    ev = st.expect(p.Open)
    assert isinstance(ev, p.Open)
    if ev.mode != mode:
        if plain:
            raise ModeError("the sender is encrypted (TLS) and this receiver has --plain; the sender must add "
                            "--plain too", E_MODE)
        raise ModeError("the sender used --plain and this receiver is encrypted (the default); refused: "
                        "start the receiver with --plain too, only on a trusted network", E_MODE)
    if context is not None:
        st.sock = context.wrap_socket(st.sock, server_side=True)


def receiver(st: Stream, *, token: bytes | None, plain: bool, context: ssl.SSLContext | None,
             fingerprint: bytes) -> Agreed:
    """The receiver's side: raises AuthError, ModeError or TransferError when the sender cannot be admitted."""
    _receiver_open(st, plain, context)
    nonce = secrets.token_bytes(p.NONCE_SIZE)
    pt, hello, mt = _greet(st, p.Welcome(p.FEATURES, token is not None, nonce).encode(), p.Hello)
    assert isinstance(hello, p.Hello)
    features = p.FEATURES & hello.features
    ev = st.next()
    if token is not None:
        if not isinstance(ev, p.Auth):
            raise AuthError("a token is required and the sender did not authenticate")
        if not p.proof_ok(p.sender_proof(token, hello.nonce, nonce, fingerprint), ev.mac):
            raise AuthError("wrong token (or a man in the middle)")
        st.send(p.AuthOk(p.receiver_proof(token, hello.nonce, nonce, fingerprint)).encode())
        ev = st.next()
    elif isinstance(ev, p.Auth):
        raise AuthError("this receiver has no token, so it cannot check the sender's")
    key = p.session_key(token, hello.nonce, nonce, fingerprint)
    need = p.ALGO_FEATURE[hello.algo]
    if need and not features & need:
        raise TransferError(f"checksum {checksum.NAMES[hello.algo]} was not negotiated", E_UNSUPPORTED)
    return Agreed(key, hello.algo, features, hello.flags, mt, pt, first=ev)


__all__ = ["Agreed", "receiver", "sender"]
