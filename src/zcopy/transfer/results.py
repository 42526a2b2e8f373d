"""What a send/recv session reports: SendResult (the sender's) and SessionResult (the receiver's). Value types,
no I/O, so every phase module can fill them in without importing the glue."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SendResult:
    """What a session did. `routes` maps the sender's route names to body bytes they moved; `receiver` is the
    receiver's own summary (its routes, bytes, files) from its BYE frame."""

    files: int = 0
    dirs: int = 0
    links: int = 0
    skipped: int = 0
    failed: list[dict[str, object]] = field(default_factory=list)
    bytes_sent: int = 0
    bytes_total: int = 0
    bytes_resumed: int = 0
    batched_files: int = 0
    seconds: float = 0.0
    checksum: str = "xxh3"
    checksum_seconds: float = 0.0
    encryption: str = "tls1.3"
    certificate: str = ""
    routes: dict[str, int] = field(default_factory=dict)
    receiver: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    via: str = "direct"  # "relay" when the bytes went through `zcopy relay`
    code: str = ""  # the short code, through a relay

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class SessionResult:
    """One session as the receiver saw it: `routes` maps route names to body bytes they moved."""

    peer: str = ""
    files: int = 0
    dirs: int = 0
    links: int = 0
    skipped: int = 0
    bytes: int = 0
    user_bytes: int = 0
    batched_files: int = 0
    syncs: int = 0
    failed: list[dict[str, object]] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)
    encryption: str = ""
    checksum: str = ""
    checksum_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    error_code: int = 0
    via: str = "direct"  # "relay" when the bytes came through `zcopy relay`

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


__all__ = ["SendResult", "SessionResult"]
