"""Short codes for send/recv through a relay, pure: `7-guitarist-revenge` is the relay's nameplate (not a secret)
followed by words from the bundled PGP word list (the PAKE password: the whole code). Two words carry 16 bits;
with SPAKE2 an attacker gets one online guess per code, so a guess succeeds with probability 1/65536 and a
failed one ends the code."""

from __future__ import annotations

import secrets

from zcopy.transfer.pgpwords import EVEN, ODD

WORDS = 2
_KNOWN = frozenset(EVEN) | frozenset(ODD)


class CodeError(ValueError):
    """Text that is not a code."""


def make(nameplate: str, words: int = WORDS) -> str:
    """A fresh code on `nameplate`: words alternate odd, even (`7-guitarist-revenge`), chosen by `secrets`."""
    picked = [(ODD if i % 2 == 0 else EVEN)[secrets.randbelow(256)] for i in range(words)]
    return "-".join([nameplate, *picked])


def parse(text: str) -> tuple[str, str]:
    """(nameplate, normalised code) from what a user typed: case and surrounding blanks do not matter.
    Words outside the list are allowed (`--code` lets the sender choose) but at least one is required."""
    code = text.strip().lower()
    plate, sep, rest = code.partition("-")
    if not plate.isdigit() or not plate.isascii() or plate.startswith("0") or len(plate) > 16:
        raise CodeError(f"{text!r} is not a code: it starts with the relay's nameplate, a number such as 7 "
                        "(e.g. 7-guitarist-revenge)")
    words = rest.split("-") if sep else []
    if not words or any(not w or not w.isascii() or not w.isalnum() for w in words):
        raise CodeError(f"{text!r} is not a code: the nameplate is followed by words joined with '-' "
                        "(e.g. 7-guitarist-revenge)")
    return plate, code


def strength(code: str) -> int:
    """Bits of guessing work in a code's words, counting only words from the list (a chosen word outside it
    is counted as nothing, to stay conservative)."""
    return sum(8 for w in code.split("-")[1:] if w in _KNOWN)


__all__ = ["WORDS", "CodeError", "make", "parse", "strength"]
