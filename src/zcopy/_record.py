"""A tiny base for plain record classes: repr, equality and as_dict from __slots__.

The core avoids `dataclasses` because importing it (it pulls in `inspect`) costs more start-up time than a whole
`zcopy cp` of a small file; records here define __slots__ and a plain __init__.
"""

from __future__ import annotations


class Record:
    __slots__: tuple[str, ...] = ()

    def _items(self) -> list[tuple[str, object]]:
        return [(k, getattr(self, k)) for k in self.__slots__]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(self) is type(other) and self._items() == other._items()

    __hash__ = None  # type: ignore[assignment]  # mutable records are not hashable

    def fields(self) -> dict[str, object]:
        """Shallow field → value mapping (records inside are converted by their owners' as_dict)."""
        return dict(self._items())
