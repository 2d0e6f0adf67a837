"""Names of everything netem creates: `sb<owner pid>-<n><role>`, so leftovers of a dead owner can be found.

The owner pid in the name lets a later run (or a concurrent one) tell a crashed run's namespaces from a live
one's without any shared state: an object whose owner pid no longer exists is stale and may be swept; an object
whose owner is alive is never touched. Names stay <= 15 characters (the kernel's interface-name limit).
"""

from __future__ import annotations

import itertools
import os
import re
import threading

PREFIX = "sb"
OWNED_NAME = re.compile(r"^sb(\d+)(?!\d)")
"""Any namespace or interface following the project convention: `sb` + owner pid (+ anything)."""
IFNAMSIZ_MAX = 15

_counter = itertools.count()
_counter_lock = threading.Lock()


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        value, rest = divmod(value, 36)
        text = digits[rest] + text
        if value == 0:
            return text


def new_prefix() -> tuple[str, int]:
    """A fresh `sb<pid>-<n>` prefix for one topology and its per-process index n (unique within this process)."""
    with _counter_lock:
        index = next(_counter)
    prefix = f"{PREFIX}{os.getpid()}-{_base36(index % (36 * 36))}"
    return prefix, index


def object_name(prefix: str, role: str) -> str:
    """`prefix + role`, checked against the 15-character interface-name limit."""
    name = prefix + role
    if len(name) > IFNAMSIZ_MAX:
        raise ValueError(f"name {name!r} is longer than {IFNAMSIZ_MAX} characters")
    return name


def owner_pid(name: str) -> int | None:
    """The owner pid encoded in a project name, or None when the name is not ours."""
    match = OWNED_NAME.match(name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (signal 0 probes without signalling)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(name: str) -> bool:
    """True for a project name whose owner process is gone; False for live owners and foreign names."""
    pid = owner_pid(name)
    return pid is not None and not pid_alive(pid)
