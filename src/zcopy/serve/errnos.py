"""Which errno means what to the server: named sets, so every `except OSError` decides the same way."""

from __future__ import annotations

import errno

# The process or the system is out of descriptors (or the kernel of memory for one): the server is overloaded,
# the request is fine. Answered 503 with Retry-After and logged as such (nginx logs "Too many open files" and
# answers 500/503); never a 404, which would tell clients and caches the file does not exist.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})

# accept(2) failures that belong to one connection, already gone, not to the server: the peer reset or aborted
# before we accepted (ECONNABORTED), a firewall refused it (EPERM), or a network error pending on the new
# socket that Linux reports through accept (the list in accept(2), "Error handling"). Retried at once, quietly.
ACCEPT_RETRY = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPERM,
        errno.EPROTO,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
    }
)


def exhausted(exc: BaseException) -> bool:
    """Is this an out-of-descriptors (or out-of-memory) OSError?"""
    return isinstance(exc, OSError) and exc.errno in EXHAUSTED
