from __future__ import annotations

from zcopy.lab.schema import COUNTERS, MODEL, RUN, check


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


def test_optional_keys_are_checked_only_when_present() -> None:
    schema = {"a": int, "b?": {"c": str}}
    assert check({"a": 1}, schema) == []
    assert check({"a": 1, "b": {"c": "x"}}, schema) == []
    assert check({"a": 1, "b": {"c": 2}}, schema) == ["$.b.c: expected str, got int"]
    assert check({}, schema) == ["$.a: missing"]


def test_runs_may_carry_their_copy_model() -> None:
    from zcopy.routes import copy_model

    assert RUN["model?"] is MODEL
    assert check(copy_model("sendfile", "file", "socket").as_dict(), MODEL) == []
    assert check({"route": "x", "line": "", "cpu_copies": 0, "dma_copies": 0, "user_space": False,
                  "hops": [{"from": "disk", "to": "page cache", "kind": "DMA"}]}, MODEL) == ["$.hops[0].note: missing"]
