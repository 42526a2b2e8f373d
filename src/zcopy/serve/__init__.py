"""zcopy serve: a zero-copy HTTP/1.1 static file server (pure HTTP rules in their own modules, I/O in conn/server)."""

from zcopy.serve.server import Server

__all__ = ["Server"]
