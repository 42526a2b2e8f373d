"""The tour's and bench's JSON schemas as data, and a small checker (pure; no jsonschema dependency).

A schema is a dict key → spec, where a spec is a type, a tuple of types, a nested dict, or a one-element list
(every item matches that spec). Keys are required unless they end in "?" (optional: checked when present, so a
field added later keeps older saved documents valid); extra keys are allowed (forward compatible).
"""

from __future__ import annotations

from typing import Any

TOUR_VERSION = "zcopy.tour/1"
BENCH_VERSION = "zcopy.bench/1"

_NUM = (int, float)

COUNTERS: dict[str, Any] = {
    "wall_s": _NUM,
    "cpu_user_s": _NUM,
    "cpu_sys_s": _NUM,
    "syscalls": dict,
    "syscall_count": int,
    "mode_switches": int,
    "ctx_voluntary": int,
    "ctx_involuntary": int,
    "minor_faults": int,
    "major_faults": int,
    "user_bytes": int,
    "disk_read_bytes": int,
    "disk_write_bytes": int,
    "dirty_kb_before": int,
    "dirty_kb_after": int,
}

MODEL: dict[str, Any] = {
    "route": str,
    "line": str,
    "cpu_copies": int,
    "dma_copies": int,
    "user_space": bool,
    "hops": [{"from": str, "to": str, "kind": str, "note": str}],
}

RUN: dict[str, Any] = {
    "mode": str,
    "route": str,
    "requested_route": (str, type(None)),
    "skipped": [list],
    "flow": str,
    "cpu_copies": int,
    "dma_copies": int,
    "nbytes": int,
    "counters": COUNTERS,
    "force": (dict, type(None)),
    "cold": (dict, type(None)),
    "peer": (dict, type(None)),  # socket steps: the other process's CPU for the same transfer
    # The copy model the run used (CopyModel.as_dict): what `zcopy tour --report` draws. Optional because tour
    # JSON saved before it was added has only the rendered `flow` line.
    "model?": MODEL,
}

TOUR: dict[str, Any] = {
    "schema": str,
    "zcopy_version": str,
    "date": str,
    "machine": {"kernel": str, "python": str, "cpus": int},
    "file": {"path": str, "size": int, "generated": bool, "kept": bool},
    "steps": [{"id": str, "title": str, "job": str, "runs": [RUN]}],
    "comparison": {"headers": [str], "rows": [list]},
    "conclusions": [{"path": str, "sentence": str}],
    "unavailable": [str],
    "wall_s": _NUM,
}

_SUMMARY = {"median": _NUM, "min": _NUM, "max": _NUM, "n": int}

BENCH: dict[str, Any] = {
    "schema": str,
    "zcopy_version": str,
    "date": str,
    "machine": {"kernel": str, "python": str, "cpus": int},
    "command": str,
    "repeats": int,
    "scenarios": [{"id": str, "title": str, "routes": [str]}],
    "sizes": [int],
    "results": [
        {
            "scenario": str,
            "route": str,
            "route_used": str,
            "size": int,
            "iterations": int,
            "wall_s": _SUMMARY,
            "cpu_s": _SUMMARY,
            "mib_per_s": _SUMMARY,
            "cpu_s_per_gib": _SUMMARY,
            "user_bytes": int,
            "syscall_count": int,
        }
    ],
}


def check(doc: Any, schema: Any, where: str = "$") -> list[str]:
    """Every mismatch between doc and schema as 'path: problem'; empty when the document conforms."""
    errors: list[str] = []
    if isinstance(schema, dict):
        if not isinstance(doc, dict):
            return [f"{where}: expected object, got {type(doc).__name__}"]
        for spec_key, sub in schema.items():
            optional = spec_key.endswith("?")
            key = spec_key.removesuffix("?")
            if key in doc:
                errors.extend(check(doc[key], sub, f"{where}.{key}"))
            elif not optional:
                errors.append(f"{where}.{key}: missing")
    elif isinstance(schema, list):
        if not isinstance(doc, list):
            return [f"{where}: expected array, got {type(doc).__name__}"]
        for i, item in enumerate(doc):
            errors.extend(check(item, schema[0], f"{where}[{i}]"))
    else:
        types = schema if isinstance(schema, tuple) else (schema,)
        # bool is an int subclass in Python; a count that came out True/False is a bug, not a number.
        if isinstance(doc, bool) and bool not in types:
            errors.append(f"{where}: expected {_names(types)}, got bool")
        elif not isinstance(doc, types):
            errors.append(f"{where}: expected {_names(types)}, got {type(doc).__name__}")
    return errors


def _names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)
