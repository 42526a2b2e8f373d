"""zcopy: zero-copy I/O with honest routes."""

__version__ = "0.1.0"
