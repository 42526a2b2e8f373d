"""`zcopy relay`: a rendezvous that pairs a sender and a receiver by nameplate and splices their bytes both
ways, never decrypting and never copying payload into user space."""

from zcopy.relay.server import Limits, Relay, format_line

__all__ = ["Limits", "Relay", "format_line"]
