"""TLS 1.3 for send/recv through the standard ssl module: the receiver's identity (made on first use) and the
contexts of both sides.

The sender verifies no CA chain and no host name: the receiver's certificate is authenticated by the token
(the HMAC proofs are bound to its SHA-256 fingerprint, docs/protocol.md), so a self-signed key pair is all a
receiver needs. The pair is generated once with the `openssl` command (Python's ssl module cannot make keys)
and kept, key and certificate in one 0600 file, in the user's config directory.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

from zcopy.transfer import certs
from zcopy.transfer.errors import TransferError

# 10 years: a receiver's own throwaway identity should not expire under a user; its trust comes from the token.
DAYS = 3650
IDENTITY_NAME = "recv-identity.pem"


class TlsSetupError(TransferError):
    """The receiver's key pair cannot be made or loaded (a user-facing message)."""


def config_dir() -> Path:
    """$XDG_CONFIG_HOME/zcopy, or ~/.config/zcopy (XDG Base Directory spec default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "zcopy"


def default_identity() -> Path:
    return config_dir() / IDENTITY_NAME


def ensure_identity(path: Path | None = None) -> Path:
    """The receiver's key + certificate file, generated (EC P-256, self-signed) if it does not exist yet or the
    one there expired. Written to a temporary name and renamed, so two receivers starting at once never load a
    half-written or mismatched pair."""
    path = path or default_identity()
    if path.exists():
        try:
            certs.check_validity(_first_cert_der(path), "the receiver's")
            return path
        except certs.CertificateError:
            pass  # expired (or unreadable) throwaway identity: make a new one
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsSetupError("cannot create the receiver's TLS key pair: the `openssl` command is not installed "
                            "(install it, give --tls-cert/--tls-key, or use --plain on both sides)")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
        r = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", cert, "-days", str(DAYS), "-subj", "/CN=zcopy recv"],
            capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise TlsSetupError(f"openssl could not create the receiver's key pair: {r.stderr.strip()}")
        combined = os.path.join(tmp, "identity.pem")
        fd = os.open(combined, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Path(key).read_bytes())
            out.write(Path(cert).read_bytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(combined, path)
    return path


def _first_cert_der(path: str | os.PathLike[str]) -> bytes:
    text = Path(path).read_text("ascii", "replace")
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise certs.CertificateError(f"{os.fspath(path)}: no PEM certificate in it")
    return ssl.PEM_cert_to_DER_cert(text[start : stop + len(end)] + "\n")


def server_context(cert: str | os.PathLike[str] | None = None, key: str | os.PathLike[str] | None = None
                   ) -> tuple[ssl.SSLContext, bytes]:
    """The receiver's context and its certificate (DER). Without `cert`, the identity from the config dir
    (made on first use). A certificate that is expired, unreadable or does not match its key is a TlsSetupError."""
    if cert is None:
        if key is not None:
            raise TlsSetupError("--tls-key needs --tls-cert")
        cert = ensure_identity()
    try:
        der = _first_cert_der(cert)
        certs.check_validity(der, f"the receiver's ({os.fspath(cert)})")
    except OSError as exc:
        raise TlsSetupError(f"cannot read {os.fspath(cert)}: {exc.strerror or exc}") from None
    except certs.CertificateError as exc:
        raise TlsSetupError(str(exc)) from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise TlsSetupError(f"cannot load the TLS key pair {os.fspath(cert)}"
                            + (f" / {os.fspath(key)}" if key else "") + f": {reason}") from None
    return ctx, der


def client_context() -> ssl.SSLContext:
    """The sender's context: TLS 1.3 only, no CA, no host name (the token authenticates the certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_certificate(sock: ssl.SSLSocket) -> bytes:
    der = sock.getpeercert(binary_form=True)
    if not der:
        raise certs.CertificateError("the receiver presented no certificate")
    return der

