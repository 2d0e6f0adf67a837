"""Which machine measured a record, read off the record itself, so that a point's statistics never silently mix
machines that compute at different speeds.

Every record carries its nodes' host facts (`host.local` / `host.remote`: hostname, CPU model, cores, kernel;
docs/METRICS.md) and the hypervisor's steal per measured window (`local_resources.host_cpu_stolen_ms`). A
distributed sweep (docs/DISTRIBUTED.md) adds `tags.worker`: the Dask worker that ran the point and its machine's
hostname (inside a container the nodes' hostname is the container's). Records of one point measured on hosts of
different CPU models are summarised per CPU model unless the user asks to pool them (`--pool-hosts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

UNKNOWN = "unknown"


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def node_host(record: dict[str, Any]) -> dict[str, Any]:
    """The host facts of the node that timed the head (the UE node), else the edge node's."""
    hosts = _table(record.get("host"))
    return _table(hosts.get("local")) or _table(hosts.get("remote"))


def cpu_model(record: dict[str, Any]) -> str:
    """The CPU model that measured `record` (`unknown` where the record does not say)."""
    model = node_host(record).get("cpu_model")
    return str(model) if isinstance(model, str) and model.strip() else UNKNOWN


def machine(record: dict[str, Any]) -> str:
    """The machine's name: the Dask worker's hostname in a distributed sweep, else the local node's."""
    worker = _table(_table(record.get("tags")).get("worker"))
    name = worker.get("hostname") or node_host(record).get("hostname")
    return str(name) if isinstance(name, str) and name else UNKNOWN


@dataclass
class MachineFacts:
    """What the records say about one machine: for the report's host section."""

    name: str
    cpu_model: str
    cpu_count: int | None
    usable_cores: int | None
    kernel: str
    records: int = 0
    workers: set[str] = field(default_factory=set)
    host_cpu_ms: float = 0.0
    host_cpu_stolen_ms: float = 0.0

    @property
    def stolen_pct(self) -> float | None:
        return 100.0 * self.host_cpu_stolen_ms / self.host_cpu_ms if self.host_cpu_ms > 0 else None

    def describe(self) -> str:
        cores = f"{self.cpu_count} CPUs" if self.cpu_count is not None else "CPUs unknown"
        if self.usable_cores is not None and self.usable_cores != self.cpu_count:
            cores += f" ({self.usable_cores} usable)"
        stolen = self.stolen_pct
        steal = "steal unknown" if stolen is None else f"{stolen:.2f} % stolen"
        text = f"{self.name}: {self.cpu_model}, {cores}, kernel {self.kernel}, {self.records} measured, {steal}"
        if self.workers:
            text += f" (Dask worker {', '.join(sorted(self.workers))})"
        return text


def machines(records: Iterable[dict[str, Any]]) -> dict[str, MachineFacts]:
    """Every machine among the measurements (warm-ups excluded by the caller), by name, in order of appearance."""
    found: dict[str, MachineFacts] = {}
    for record in records:
        name = machine(record)
        host = node_host(record)
        facts = found.get(name)
        if facts is None:
            facts = found[name] = MachineFacts(
                name=name, cpu_model=cpu_model(record), cpu_count=_int(host.get("cpu_count")),
                usable_cores=_int(host.get("usable_cores")), kernel=str(host.get("kernel") or UNKNOWN))
        facts.records += 1
        worker = _table(_table(record.get("tags")).get("worker")).get("name")
        if isinstance(worker, str) and worker:
            facts.workers.add(worker)
        for side in ("local_resources", "remote_resources"):
            window = _table(record.get(side))
            steal, total = window.get("host_cpu_stolen_ms"), window.get("host_cpu_ms")
            if isinstance(steal, (int, float)) and isinstance(total, (int, float)):
                facts.host_cpu_stolen_ms += steal
                facts.host_cpu_ms += total
    return found


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
