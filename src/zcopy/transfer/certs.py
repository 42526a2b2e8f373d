"""What send/recv needs to know about an X.509 certificate, pure (DER bytes in): its fingerprint and validity.

The sender trusts no CA (the token authenticates the receiver's certificate, docs/protocol.md), so Python's
ssl module never parses the peer certificate for us (getpeercert() is empty under CERT_NONE). The validity
period is the one field we still police, read here with a minimal DER walk.
"""

from __future__ import annotations

import datetime
import hashlib
import re

from zcopy.transfer.errors import TransferError


class CertificateError(TransferError):
    """A certificate that cannot be used: unparsable, expired or not yet valid."""


def fingerprint(der: bytes) -> bytes:
    """SHA-256 of the DER certificate: what the token's proofs are bound to."""
    return hashlib.sha256(der).digest()


def fingerprint_text(der: bytes) -> str:
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def is_fingerprint_text(text: str) -> bool:
    """Whether `text` has the form fingerprint_text gives (case aside): "SHA256:" and 64 hex digits."""
    return re.fullmatch(r"sha256:[0-9a-f]{64}", text.strip().lower()) is not None


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`."""
    if pos + 2 > len(data):
        raise CertificateError("malformed certificate: truncated DER")
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if not 0 < n <= 4 or pos + n > len(data):
            raise CertificateError("malformed certificate: bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise CertificateError("malformed certificate: truncated DER")
    return tag, pos, pos + length


def _time(tag: int, raw: bytes) -> datetime.datetime:
    text = raw.decode("ascii", "replace")
    try:
        if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ; RFC 5280 4.1.2.5.1: YY >= 50 is 19YY
            t = datetime.datetime.strptime(text, "%y%m%d%H%M%SZ")
            if t.year >= 2050:
                t = t.replace(year=t.year - 100)
        elif tag == 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
            t = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
        else:
            raise ValueError(f"tag {tag:#x}")
    except ValueError as exc:
        raise CertificateError(f"malformed certificate validity time {text!r}: {exc}") from None
    return t.replace(tzinfo=datetime.timezone.utc)


def validity(der: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    """(notBefore, notAfter) of a DER certificate (RFC 5280 4.1: Certificate → TBSCertificate → Validity)."""
    tag, start, _ = _tlv(der, 0)
    if tag != 0x30:
        raise CertificateError("malformed certificate: not a DER SEQUENCE")
    tag, pos, _ = _tlv(der, start)  # tbsCertificate
    if tag != 0x30:
        raise CertificateError("malformed certificate: no TBSCertificate")
    tag, _, end = _tlv(der, pos)
    if tag == 0xA0:  # [0] EXPLICIT version
        pos = end
    for _ in range(3):  # serialNumber, signature (algorithm), issuer
        _, _, pos = _tlv(der, pos)
    tag, vstart, _ = _tlv(der, pos)
    if tag != 0x30:
        raise CertificateError("malformed certificate: no validity")
    t1, s1, e1 = _tlv(der, vstart)
    t2, s2, e2 = _tlv(der, e1)
    return _time(t1, der[s1:e1]), _time(t2, der[s2:e2])


def check_validity(der: bytes, whose: str, now: datetime.datetime | None = None) -> None:
    """Raise CertificateError if the certificate is expired or not yet valid at `now` (default: the clock)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = validity(der)
    if now > not_after:
        raise CertificateError(f"{whose} certificate expired on {not_after:%Y-%m-%d %H:%M} UTC")
    if now < not_before:
        raise CertificateError(f"{whose} certificate is not valid before {not_before:%Y-%m-%d %H:%M} UTC "
                               "(check the clocks)")
