"""ReplaceResult and the grep-like exit-code rule."""

from __future__ import annotations

from zcopy.edit.result import EXIT_CHANGED, EXIT_ERROR, EXIT_NO_MATCH, IN_PLACE, ReplaceResult, exit_code


def test_exit_code_rule() -> None:
    hit = ReplaceResult("a", matches=2, route=IN_PLACE)
    miss = ReplaceResult("b")
    assert exit_code([hit, miss], errors=0) == EXIT_CHANGED == 0
    assert exit_code([miss], errors=0) == EXIT_NO_MATCH == 1
    assert exit_code([], errors=0) == EXIT_NO_MATCH
    assert exit_code([hit], errors=1) == EXIT_ERROR == 2  # any failed file wins


def test_changed_and_dict() -> None:
    assert ReplaceResult("a", matches=1, route=IN_PLACE).changed
    assert not ReplaceResult("a", matches=1, route=IN_PLACE, dry_run=True).changed
    assert not ReplaceResult("a", matches=1).changed  # matched text already equal to NEW: nothing written
    d = ReplaceResult("a", matches=3, route=IN_PLACE).as_dict()
    assert d["matches"] == 3 and d["changed"] is True and d["route"] == "in-place mmap"
