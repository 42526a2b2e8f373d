"""Opt-in accounting: `with observe() as obs:` records every zcopy operation (route, bytes, syscalls by name,
bytes that crossed user space, CPU, context switches, page faults) and process deltas of what really hit the disk
(/proc/self/io) and of dirty page cache (/proc/meminfo). Outside `observe` an operation pays one contextvar lookup.
"""

from __future__ import annotations

import contextvars
import resource
import time
from collections.abc import Iterable, Mapping
from types import TracebackType

from zcopy._record import Record

_active: contextvars.ContextVar[Observer | None] = contextvars.ContextVar("zcopy_observer", default=None)

# RUSAGE_THREAD (Linux 2.6.26) scopes an operation's CPU and faults to the thread that did it.
_RUSAGE_OP = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


class Usage(Record):
    """CPU, scheduling and fault counters over an interval (getrusage deltas)."""

    __slots__ = ("cpu_sys_s", "cpu_user_s", "ctx_involuntary", "ctx_voluntary", "major_faults", "minor_faults")

    def __init__(
        self,
        cpu_user_s: float = 0.0,
        cpu_sys_s: float = 0.0,
        ctx_voluntary: int = 0,
        ctx_involuntary: int = 0,
        minor_faults: int = 0,
        major_faults: int = 0,
    ) -> None:
        self.cpu_user_s = cpu_user_s
        self.cpu_sys_s = cpu_sys_s
        self.ctx_voluntary = ctx_voluntary
        self.ctx_involuntary = ctx_involuntary
        self.minor_faults = minor_faults
        self.major_faults = major_faults

    @classmethod
    def between(cls, a: resource.struct_rusage, b: resource.struct_rusage) -> Usage:
        return cls(
            b.ru_utime - a.ru_utime,
            b.ru_stime - a.ru_stime,
            b.ru_nvcsw - a.ru_nvcsw,
            b.ru_nivcsw - a.ru_nivcsw,
            b.ru_minflt - a.ru_minflt,
            b.ru_majflt - a.ru_majflt,
        )

    def as_dict(self) -> dict[str, object]:
        return self.fields()


class _Syscalls(Record):
    """syscall_count and the article's mode switches, derived from a `syscalls` name → count mapping."""

    __slots__ = ()
    syscalls: dict[str, int]

    @property
    def syscall_count(self) -> int:
        return sum(self.syscalls.values())

    @property
    def mode_switches(self) -> int:
        # The article counts a user→kernel and a kernel→user switch per system call.
        return 2 * self.syscall_count

    def _counts(self) -> dict[str, object]:
        return {"syscalls": dict(self.syscalls), "syscall_count": self.syscall_count,
                "mode_switches": self.mode_switches}


class Operation(_Syscalls):
    """One recorded operation: what was asked (op), how it was done (route) and what it cost."""

    __slots__ = ("disk_wait_s", "nbytes", "op", "route", "skipped", "syscalls", "usage", "user_bytes", "wall_s")

    def __init__(
        self,
        op: str,
        route: str,
        nbytes: int,
        syscalls: dict[str, int],
        user_bytes: int,
        wall_s: float,
        skipped: list[tuple[str, str]] | None = None,
        usage: Usage | None = None,
        disk_wait_s: float = 0.0,
    ) -> None:
        self.op = op  # "transfer_to", "copy", "read", "force", ...
        self.route = route  # "sendfile", "splice", "readwrite", ...
        self.nbytes = nbytes
        self.syscalls = syscalls
        self.user_bytes = user_bytes  # bytes copied between kernel and user space (read then write of n: 2n)
        self.wall_s = wall_s
        self.skipped = skipped if skipped is not None else []  # routes tried first and why they gave up
        self.usage = usage if usage is not None else Usage()
        # Time the body spent waiting for the disk off the event loop (the server's cold chunks in disk threads).
        self.disk_wait_s = disk_wait_s

    def as_dict(self) -> dict[str, object]:
        d = self.fields()
        if not self.disk_wait_s:
            del d["disk_wait_s"]  # only operations that waited for the disk say so
        d.update(self._counts())
        d["skipped"] = [list(x) for x in self.skipped]
        d["usage"] = self.usage.as_dict()
        return d


class Totals(_Syscalls):
    """Sums over the operations plus process-wide deltas over the observe block."""

    __slots__ = (
        "dirty_kb_after",
        "dirty_kb_before",
        "disk_read_bytes",
        "disk_write_bytes",
        "io_rchar",
        "io_wchar",
        "nbytes",
        "routes",
        "syscalls",
        "usage",
        "user_bytes",
        "wall_s",
    )

    def __init__(self, wall_s: float = 0.0) -> None:
        self.nbytes = 0
        self.syscalls: dict[str, int] = {}
        self.user_bytes = 0
        self.wall_s = wall_s
        self.usage = Usage()  # whole process (all threads)
        self.disk_read_bytes = 0  # /proc/self/io read_bytes: what storage really delivered
        self.disk_write_bytes = 0  # /proc/self/io write_bytes: what this process caused to be written to storage
        self.io_rchar = 0  # /proc/self/io rchar/wchar: bytes through read-like/write-like syscalls
        self.io_wchar = 0
        self.dirty_kb_before = 0  # /proc/meminfo Dirty (system-wide) at start and end
        self.dirty_kb_after = 0
        self.routes: dict[str, int] = {}  # route → bytes moved by it

    def as_dict(self) -> dict[str, object]:
        d = self.fields()
        d.update(self._counts())
        d["routes"] = dict(self.routes)
        d["usage"] = self.usage.as_dict()
        return d


def read_proc_io() -> dict[str, int]:
    """/proc/self/io counters (Linux with task I/O accounting); empty where unavailable."""
    try:
        with open("/proc/self/io", "rb") as f:
            text = f.read().decode()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            out[key.strip()] = int(value)
    return out


def read_meminfo(keys: Iterable[str] = ("Dirty", "Writeback")) -> dict[str, int]:
    """Selected /proc/meminfo fields in kB."""
    wanted = set(keys)
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo", "rb") as f:
            for raw in f:
                key, _, rest = raw.decode().partition(":")
                if key in wanted:
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


class Observer:
    """Collects operations while active. Use through `observe()`; not thread-shared (contextvar scoped)."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []
        self._token: contextvars.Token[Observer | None] | None = None
        self._final: Totals | None = None

    def __enter__(self) -> Observer:
        self._io0 = read_proc_io()
        self._dirty0 = read_meminfo().get("Dirty", 0)
        self._ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()
        self._token = _active.set(self)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._final = self._snapshot()
        if self._token is not None:
            _active.reset(self._token)
            self._token = None

    @property
    def totals(self) -> Totals:
        """Sum of operations plus process deltas; frozen at exit, live while inside the block."""
        return self._final if self._final is not None else self._snapshot()

    def _snapshot(self) -> Totals:
        t = Totals(wall_s=time.perf_counter() - self._t0)
        t.usage = Usage.between(self._ru0, resource.getrusage(resource.RUSAGE_SELF))
        for o in self.operations:
            t.nbytes += o.nbytes
            t.user_bytes += o.user_bytes
            t.routes[o.route] = t.routes.get(o.route, 0) + o.nbytes
            for k, v in o.syscalls.items():
                t.syscalls[k] = t.syscalls.get(k, 0) + v
        io1 = read_proc_io()
        t.disk_read_bytes = io1.get("read_bytes", 0) - self._io0.get("read_bytes", 0)
        t.disk_write_bytes = io1.get("write_bytes", 0) - self._io0.get("write_bytes", 0)
        t.io_rchar = io1.get("rchar", 0) - self._io0.get("rchar", 0)
        t.io_wchar = io1.get("wchar", 0) - self._io0.get("wchar", 0)
        t.dirty_kb_before = self._dirty0
        t.dirty_kb_after = read_meminfo().get("Dirty", 0)
        return t

    def summary(self) -> dict[str, object]:
        return {"operations": [o.as_dict() for o in self.operations], "totals": self.totals.as_dict()}


def current() -> Observer | None:
    return _active.get()


class Pending:
    """An operation being measured; created only while observing (see `begin`)."""

    __slots__ = ("_obs", "_ru", "_t")

    def __init__(self, obs: Observer) -> None:
        self._obs = obs
        self._ru = resource.getrusage(_RUSAGE_OP)
        self._t = time.perf_counter()

    def end(
        self,
        op: str,
        route: str,
        nbytes: int,
        syscalls: Mapping[str, int] | None = None,
        user_bytes: int = 0,
        skipped: Iterable[tuple[str, str]] = (),
    ) -> Operation:
        usage = Usage.between(self._ru, resource.getrusage(_RUSAGE_OP))
        o = Operation(
            op, route, nbytes, dict(syscalls or {}), user_bytes, time.perf_counter() - self._t, list(skipped), usage
        )
        self._obs.operations.append(o)
        return o


def begin() -> Pending | None:
    """Start measuring an operation if an observer is active (the hot path outside observe: one lookup)."""
    obs = _active.get()
    return None if obs is None else Pending(obs)


def record(
    op: str,
    route: str,
    nbytes: int,
    *,
    syscalls: Mapping[str, int] | None = None,
    user_bytes: int = 0,
    wall_s: float = 0.0,
    skipped: Iterable[tuple[str, str]] = (),
    disk_wait_s: float = 0.0,
) -> None:
    """For tools that make their own syscalls (e.g. the HTTP server's async sendfile): report one operation."""
    obs = _active.get()
    if obs is not None:
        op_ = Operation(op, route, nbytes, dict(syscalls or {}), user_bytes, wall_s, list(skipped), None, disk_wait_s)
        obs.operations.append(op_)


class observe(Observer):
    """`with zcopy.observe() as obs:` — see the module docstring.

    `zcopy.observe` (this class) shadows the module name on the package, so the module's helpers are reachable
    from it too: `zcopy.observe.record(...)`, `zcopy.observe.begin()`, `zcopy.observe.current()`.
    """

    record = staticmethod(record)
    begin = staticmethod(begin)
    current = staticmethod(current)
