"""UE-like resource limits for a node: CPU share, memory cap, optional CPU pinning.

Parsed and range-checked here, once, so a typo ("2gb", cpus=0) is a clear `LimitError` before any container
exists. `describe()` is what a metrics record embeds, so a number always says under which limits it was taken.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from splitbed.runtime.errors import LimitError

# Docker refuses memory caps below 6 MiB; a Python node needs far more, so ask for at least 32 MiB.
MIN_MEMORY_BYTES = 32 * 1024**2
MIN_CPUS = 0.01
MIN_CPU_PERIOD_US, MAX_CPU_PERIOD_US = 1000, 1000000
DEFAULT_CPU_PERIOD_US = 100_000  # the kernel's and Docker's default CFS period
DEFAULT_PIDS_LIMIT = 1024

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_CPUSET_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_memory(value: str | int) -> int:
    """Bytes from `"512m"`, `"2g"`, `"1.5GiB"` or an int (bytes); binary units like Docker's `--memory`."""
    if isinstance(value, bool):
        raise LimitError(f"memory limit must be a size like '512m' or '2g', not {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _MEMORY_RE.match(str(value))
        if not match:
            raise LimitError(f"memory limit {value!r} is not a size: use e.g. '512m', '2g' or a byte count")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < MIN_MEMORY_BYTES:
        raise LimitError(f"memory limit {value!r} is below the minimum of 32m (a Python node cannot start in less)")
    return size


@dataclass(frozen=True)
class NodeLimits:
    """Limits for one node. `None` means unlimited (the host's share)."""

    cpus: float | None = None  # CPU time per wall second, like `docker run --cpus` (0.5 = half a core)
    memory_bytes: int | None = None  # hard cap, swap included (no swap beyond it)
    cpuset: str | None = None  # pin to these host CPUs, e.g. "0" or "0-1"
    pids: int = DEFAULT_PIDS_LIMIT  # bound on processes+threads in the container
    # CFS enforces `cpus` per period (Docker's default 100 ms): a burst shorter than cpus x period runs at full
    # speed. A shorter period makes short inferences feel the limit too (see docs/DOCKER.md).
    cpu_period_us: int | None = None

    @classmethod
    def make(cls, cpus: float | None = None, memory: str | int | None = None, cpuset: str | None = None,
             pids: int = DEFAULT_PIDS_LIMIT, cpu_period_us: int | None = None,
             host_cpus: int | None = None) -> NodeLimits:
        """Validated limits; `host_cpus` (default: this host's count) bounds `cpus` like Docker does."""
        available = host_cpus or os.cpu_count() or 1
        if cpus is not None:
            if isinstance(cpus, bool) or not isinstance(cpus, (int, float)):
                raise LimitError(f"cpus must be a number like 0.5, not {cpus!r}")
            if not MIN_CPUS <= float(cpus) <= available:
                raise LimitError(f"cpus={cpus} is out of range: this host allows {MIN_CPUS} to {available}")
            cpus = float(cpus)
        memory_bytes = parse_memory(memory) if memory is not None else None
        if cpuset is not None:
            if not _CPUSET_RE.match(cpuset):
                raise LimitError(f"cpuset {cpuset!r} is malformed: use e.g. '0', '0-1' or '0,1'")
            highest = max(int(part) for part in re.split(r"[-,]", cpuset))
            if highest >= available:
                raise LimitError(f"cpuset {cpuset!r} names CPU {highest}, but this host has CPUs 0-{available - 1}")
        if isinstance(pids, bool) or not isinstance(pids, int) or not 16 <= pids <= 65536:
            raise LimitError(f"pids limit {pids!r} must be an integer from 16 to 65536")
        if cpu_period_us is not None:
            if cpus is None:
                raise LimitError("cpu_period_us only makes sense with a cpus limit")
            if isinstance(cpu_period_us, bool) or not isinstance(cpu_period_us, int) \
                    or not MIN_CPU_PERIOD_US <= cpu_period_us <= MAX_CPU_PERIOD_US:
                raise LimitError(f"cpu_period_us={cpu_period_us!r} must be an integer from {MIN_CPU_PERIOD_US} "
                                 f"to {MAX_CPU_PERIOD_US} (the kernel's CFS bounds)")
            if cpus * cpu_period_us < MIN_CPU_PERIOD_US:
                raise LimitError(f"cpus={cpus} x cpu_period_us={cpu_period_us} gives a quota below the kernel's "
                                 f"minimum of {MIN_CPU_PERIOD_US} us; use a longer period")
        return cls(cpus=cpus, memory_bytes=memory_bytes, cpuset=cpuset, pids=pids, cpu_period_us=cpu_period_us)

    @property
    def unlimited(self) -> bool:
        return self.cpus is None and self.memory_bytes is None and self.cpuset is None

    def docker_host_config(self) -> dict[str, Any]:
        """Keyword arguments for the Docker SDK's `create_host_config`."""
        config: dict[str, Any] = {"pids_limit": self.pids}
        if self.cpus is not None:
            # CFS period + quota rather than NanoCpus (the same cgroup settings): only these can be changed
            # on a running container (`update_limits`), and NanoCpus cannot be mixed with them.
            config["cpu_period"], config["cpu_quota"] = self.cfs_period_quota()
        if self.memory_bytes is not None:
            config["mem_limit"] = self.memory_bytes
            config["memswap_limit"] = self.memory_bytes  # equal: no swap on top of the cap
        if self.cpuset is not None:
            config["cpuset_cpus"] = self.cpuset
        return config

    def cfs_period_quota(self) -> tuple[int, int]:
        """(period, quota) in microseconds; quota -1 means unlimited."""
        period = self.cpu_period_us or DEFAULT_CPU_PERIOD_US
        return period, (-1 if self.cpus is None else round(self.cpus * period))

    def docker_update(self) -> dict[str, Any]:
        """Keyword arguments for the Docker SDK's `update_container` (a running container's new limits)."""
        period, quota = self.cfs_period_quota()
        update: dict[str, Any] = {"cpu_period": period, "cpu_quota": quota}
        if self.memory_bytes is not None:
            update["mem_limit"] = update["memswap_limit"] = self.memory_bytes
        if self.cpuset is not None:
            update["cpuset_cpus"] = self.cpuset
        return update

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for metrics records."""
        return {"cpus": self.cpus, "memory_bytes": self.memory_bytes, "cpuset": self.cpuset, "pids": self.pids,
                "cpu_period_us": self.cpu_period_us}
