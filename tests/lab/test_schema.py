from __future__ import annotations

from zcopy.lab.schema import COUNTERS, check


def test_check_accepts_and_reports_paths() -> None:
    schema = {"a": int, "b": {"c": str}, "d": [{"e": (int, float)}]}
    assert check({"a": 1, "b": {"c": "x"}, "d": [{"e": 1.5}, {"e": 2}], "extra": 0}, schema) == []
    errors = check({"a": "1", "b": {}, "d": [{"e": "no"}]}, schema)
    assert "$.a: expected int, got str" in errors
    assert "$.b.c: missing" in errors
    assert "$.d[0].e: expected int or float, got str" in errors


def test_bool_is_not_a_count() -> None:
    assert check({"n": True}, {"n": int}) == ["$.n: expected int, got bool"]
    assert check({"n": True}, {"n": bool}) == []


def test_counters_schema_names_every_counter_the_issue_asks_for() -> None:
    wanted = {"wall_s", "cpu_user_s", "cpu_sys_s", "syscall_count", "mode_switches", "ctx_voluntary",
              "ctx_involuntary", "minor_faults", "major_faults", "user_bytes", "disk_read_bytes",
              "disk_write_bytes", "dirty_kb_before", "dirty_kb_after"}  # fmt: skip
    assert wanted <= set(COUNTERS)
