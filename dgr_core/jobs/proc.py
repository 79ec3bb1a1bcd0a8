"""Process identity: a pid alone is not a process. After a crash or a reboot the pid a run recorded can belong to
anyone, so a run records its worker's pid *and* start time (boot id + start tick from /proc/<pid>/stat), and
nothing trusts or signals a pid whose identity no longer matches.

    ident = identity(os.getpid())        # "3f2c…:1234567"  (None where /proc is unavailable)
    alive(pid, ident)                    # False for a dead, zombie or reused pid
"""

from __future__ import annotations

import os
from functools import lru_cache


@lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot's id (a start tick is counted from boot, so two boots can repeat one)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def identity(pid: int) -> str | None:
    """'<boot id>:<start tick>' of a live process; None if there is no such process (or no /proc)."""
    fields = _stat_fields(pid)
    if not fields or len(fields) < 20:
        return None
    return f"{boot_id()}:{fields[19]}"  # field 22 of stat (starttime); fields[0] here is field 3 (state)


def alive(pid: int | None, ident: str | None = None) -> bool:
    """True if `pid` runs, is not a zombie, and (when `ident` is given) is still the process that recorded it."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists, but only the identity can say whether it is ours
    fields = _stat_fields(pid)
    if fields is None:
        return ident is None  # no /proc (not Linux): trust the pid only when there is no identity to check
    if fields[0] == "Z":
        return False
    return ident is None or identity(pid) == ident
