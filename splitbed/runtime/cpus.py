"""Which CPUs the UE node, the edge node, the userspace link and the packet captures run on (docs/SWEEP.md,
"Repeatability").

Unpinned, the scheduler moves the two nodes' TensorFlow threads and the link process over every CPU, so one
node's compute competes with the other's stragglers and with the link in a way that changes from inference to
inference: single compute outliers on either node made the coefficient of variation of e2e 2-10 % per point.
Pinned, each keeps its CPUs (and caches) from one inference to the next.

Default plan from the CPUs this process may use (its affinity, so a container's cpuset counts), in order:
- 1 CPU: nothing to separate; everything on it.
- 2 CPUs: UE on the first, edge and link on the second. The UE's head and the edge's tail run one after the
  other, each alone on its CPU; the link is busy mostly while data crosses, when the UE sends (its CPU) and the edge
  only receives (the link's CPU), and it runs SCHED_FIFO, so it preempts the edge there at once. The packet
  captures (one child per side, reading every frame) go with the UE: they lag the transfer of a large tensor and
  so still read while the edge computes its tail, when the UE's CPU is idle; on the edge's CPU they took that time
  from the tail.
- 3 or more: the link gets the last CPU alone, the captures share it (both are busy while data crosses, neither
  while a node computes); the others are split between the UE (first half, rounded down) and the edge (the rest).
A plan is given as text `ue=0;edge=1;link=1;capture=0` (CPU lists like taskset's: `0-3,6`), `auto`, or `none`
(no pinning). Processes are pinned at exec (`taskset`, so TensorFlow sizes its thread pools to the CPUs it has) or,
once running, with `sched_setaffinity` on every thread (the link process); a capture child pins itself
(netem.capture `--cpus`) before it opens its socket.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = ("ue", "edge", "link", "capture")
MAX_CPU = 4095
_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


class CpuPlanError(ValueError):
    """A CPU plan that names an unknown role, a malformed list or CPUs this process may not use."""


@dataclass(frozen=True)
class CpuPlan:
    """CPUs per role; an empty tuple leaves that role unpinned. `source` says how the plan was chosen."""

    ue: tuple[int, ...]
    edge: tuple[int, ...]
    link: tuple[int, ...]
    source: str
    capture: tuple[int, ...] = ()

    def cpus(self, role: str) -> tuple[int, ...]:
        if role not in ROLES:
            raise CpuPlanError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        return tuple(getattr(self, role))

    @property
    def pinned(self) -> bool:
        return bool(self.ue or self.edge or self.link or self.capture)

    def to_dict(self) -> dict[str, Any]:
        """What a metrics record carries (`link.cpus`)."""
        return {"ue": list(self.ue), "edge": list(self.edge), "link": list(self.link),
                "capture": list(self.capture), "source": self.source,
                "host_cpus": os.cpu_count()}

    def text(self) -> str:
        return ";".join(f"{role}={format_cpus(self.cpus(role))}" for role in ROLES if self.cpus(role)) or "none"


def available_cpus() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return tuple(range(os.cpu_count() or 1))


def default_plan(cpus: Sequence[int] | None = None) -> CpuPlan:
    """The plan for these CPUs (default: the ones this process may use); see the module docstring."""
    have = tuple(sorted(cpus if cpus is not None else available_cpus()))
    n = len(have)
    if n == 0:
        return CpuPlan((), (), (), "no CPU list available: not pinned")
    if n == 1:
        return CpuPlan(have, have, have, "default for 1 CPU: all on it", have)
    if n == 2:
        return CpuPlan(have[:1], have[1:], have[1:], "default for 2 CPUs: UE with the captures, edge with the link",
                       have[:1])
    nodes = have[:-1]
    half = max(1, len(nodes) // 2)
    return CpuPlan(nodes[:half], nodes[half:], have[-1:], f"default for {n} CPUs: link with the captures, nodes "
                   "split", have[-1:])


def parse_cpus(text: str) -> tuple[int, ...]:
    """`0-2,5` -> (0, 1, 2, 5)."""
    text = text.strip()
    if not _LIST.match(text):
        raise CpuPlanError(f"CPU list {text!r} is not like 0 or 0-3,6")
    result: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first or last > MAX_CPU:
            raise CpuPlanError(f"CPU range {part!r} is empty or beyond CPU {MAX_CPU}")
        result.update(range(first, last + 1))
    return tuple(sorted(result))


def format_cpus(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


def plan_from(spec: str | Mapping[str, Any] | CpuPlan | None, cpus: Sequence[int] | None = None) -> CpuPlan:
    """A plan from `auto` (or None), `none`, `ue=0;edge=1;link=1`, a mapping role -> CPUs, or a CpuPlan. Roles
    left out stay unpinned; CPUs this process may not use are refused."""
    if isinstance(spec, CpuPlan):
        plan = spec
    elif spec is None or spec == "auto":
        return default_plan(cpus)
    elif spec == "none":
        return CpuPlan((), (), (), "not pinned (asked: none)")
    else:
        table: dict[str, tuple[int, ...]] = {}
        items: list[tuple[str, Any]]
        if isinstance(spec, str):
            items = []
            for part in filter(None, (p.strip() for p in spec.split(";"))):
                role, sep, value = part.partition("=")
                if not sep:
                    raise CpuPlanError(f"CPU plan part {part!r} is not ROLE=CPUS (e.g. ue=0;edge=1;link=1;capture=0)")
                items.append((role.strip(), value))
        elif isinstance(spec, Mapping):
            items = list(spec.items())
        else:
            raise CpuPlanError(f"a CPU plan is auto, none, ROLE=CPUS;... or a mapping, not {type(spec).__name__}")
        for role, value in items:
            if role not in ROLES:
                raise CpuPlanError(f"unknown role {role!r} in the CPU plan; roles: {', '.join(ROLES)}")
            table[role] = parse_cpus(value) if isinstance(value, str) else tuple(sorted(int(c) for c in value))
        plan = CpuPlan(table.get("ue", ()), table.get("edge", ()), table.get("link", ()), "given",
                       table.get("capture", ()))
    have = set(cpus if cpus is not None else available_cpus())
    for role in ROLES:
        outside = sorted(set(plan.cpus(role)) - have)
        if outside:
            raise CpuPlanError(f"CPU plan puts {role} on CPU(s) {format_cpus(outside)}, but this process may only "
                               f"use {format_cpus(sorted(have))}")
    return plan


def exec_prefix(cpus: Sequence[int]) -> list[str]:
    """argv prefix that starts a program on `cpus` (nothing when unpinned)."""
    return ["taskset", "-c", format_cpus(cpus)] if cpus else []


def pin_process(pid: int, cpus: Sequence[int]) -> int:
    """Pin every thread of a running process; returns how many threads were pinned. New threads inherit it."""
    if not cpus:
        return 0
    tasks = Path(f"/proc/{pid}/task")
    count = 0
    for task in (sorted(tasks.iterdir()) if tasks.is_dir() else [Path(str(pid))]):
        try:
            os.sched_setaffinity(int(task.name), set(cpus))
            count += 1
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return count
