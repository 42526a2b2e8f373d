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
    bytes_total: int = 0  # what the manifest announced (file bodies), known once it has arrived
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


# The routes that move a body without copying it into user space, per side. The sender's sendfile: the file's
# pages go to the socket by reference. The receiver's splice (only with `recv --cache`): no copy into user space,
# one CPU copy in the kernel (socket buffer → pipe → page cache). The receiver's default, direct, makes one CPU
# copy (socket → its buffer, hashed there) and then DMA to the disk: zero page-cache copies, but not zero-copy.
ZERO_COPY_ROUTES = {"sender": frozenset({"sendfile"}), "receiver": frozenset({"splice"})}


def zero_copy(side: str, routes: object, encryption: object) -> bool | None:
    """Whether every body byte one side moved went by its zero-copy route: None when it moved none (nothing to
    claim) or its report is missing; False when encrypted (TLS copies every byte through user space)."""
    if not isinstance(routes, dict):
        return None
    moved = {name for name, n in routes.items() if n}
    if not moved:
        return None
    return encryption == "none" and moved <= ZERO_COPY_ROUTES[side]


def session_zero_copy(sender: bool | None, receiver: bool | None) -> bool | None:
    """The session's claim: zero-copy only when both sides say so; None when either has nothing to say."""
    if sender is None or receiver is None:
        return None
    return sender and receiver


__all__ = ["ZERO_COPY_ROUTES", "SendResult", "SessionResult", "session_zero_copy", "zero_copy"]
