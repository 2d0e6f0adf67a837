"""How the records in a report were measured, read off the records themselves: clocks, link backends and
profiles (with their sources), node runtimes, software versions, hosts, inference call, weights (with the random
weights warning). A report states all of it, so a number is never separated from its method."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from splitbed.nodes.metrics import DROPPED_STATUS
from splitbed.sweep.hosts import MachineFacts, machines
from splitbed.sweep.store import is_measurement


@dataclass
class Provenance:
    records: int = 0
    measurements: int = 0
    warmups: int = 0
    errors: int = 0
    first_utc: str | None = None
    last_utc: str | None = None
    clocks: Counter[str] = field(default_factory=Counter)
    backends: Counter[str] = field(default_factory=Counter)
    runtimes: Counter[str] = field(default_factory=Counter)
    tcp: Counter[str] = field(default_factory=Counter)
    inference_calls: Counter[str] = field(default_factory=Counter)
    images: Counter[str] = field(default_factory=Counter)
    weights: Counter[str] = field(default_factory=Counter)
    weights_warnings: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    machines: dict[str, MachineFacts] = field(default_factory=dict)  # every machine that measured (by name)
    emulators: dict[str, Any] = field(default_factory=dict)
    host_cpu_ms: float = 0.0
    host_cpu_stolen_ms: float = 0.0
    host_cpu_wait_ms: list[float] = field(default_factory=list)
    # what ended each measured transfer: "kernel_rx", or the reason it ended at the node's read (schema >= 2.2;
    # "app_read" alone for older records), or "bounded_by_rest" (a downlink ended at its RESULT_REST's stamp)
    delivery_ends: Counter[str] = field(default_factory=Counter)
    downlink_ends: Counter[str] = field(default_factory=Counter)
    # trace-driven profiles: (profile, direction, trace file name) -> the start_s each measured record ran at
    trace_starts: dict[tuple[str, str, str], set[float]] = field(default_factory=dict)
    # devices (docs/DEVICES.md): side -> "name: mechanism" -> records; one description per device name
    devices: dict[str, Counter[str]] = field(default_factory=lambda: {"ue": Counter(), "edge": Counter()})
    device_descriptions: dict[str, str] = field(default_factory=dict)
    late_stretches: Counter[str] = field(default_factory=Counter)  # UE late_cause -> records

    @property
    def random_weights(self) -> bool:
        return any(w.startswith("random") for w in self.weights)

    @property
    def host_cpu_stolen_pct(self) -> float | None:
        """Share of the host's CPU time stolen by the hypervisor in the nodes' measured windows, all records."""
        return 100.0 * self.host_cpu_stolen_ms / self.host_cpu_ms if self.host_cpu_ms > 0 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def provenance(records: Iterable[dict[str, Any]]) -> Provenance:
    info = Provenance()
    measured: list[dict[str, Any]] = []
    for record in records:
        if record.get("record_type") != "inference":
            continue
        info.records += 1
        if not is_measurement(record):
            info.warmups += 1
            continue
        info.measurements += 1
        measured.append(record)
        if record.get("status") not in ("ok", DROPPED_STATUS):  # a dropped frame (paced workload) is no error
            info.errors += 1
        started = record.get("started_at_utc")
        if isinstance(started, str):
            info.first_utc = min(info.first_utc or started, started)
            info.last_utc = max(info.last_utc or started, started)
        clock = _dict(record.get("clock"))
        info.clocks[str(clock.get("method") or "unknown")] += 1
        link = _dict(record.get("link"))
        backend = str(link.get("backend") or "unknown")
        info.backends[backend] += 1
        info.runtimes[str(link.get("runtime") or "unknown")] += 1
        info.tcp[_tcp_label(_dict(link.get("tcp")))] += 1
        profile = _dict(link.get("profile"))
        _add_trace_starts(info, profile)
        if profile.get("name"):
            info.profiles.setdefault(str(profile["name"]), profile)
            emulator = link.get("emulator")
            if emulator is not None:
                info.emulators.setdefault(backend, emulator)
        info.inference_calls[str(record.get("inference_call") or "unknown")] += 1
        info.images[str(record.get("image"))] += 1
        weights = _dict(record.get("weights"))
        source = str(weights.get("source") or "unknown")
        label = f"{source}:{weights.get('seed')}" if source == "random" else source
        if source == "file" and weights.get("sha256"):
            label += f" (sha256 {str(weights['sha256'])[:12]})"
        info.weights[label] += 1
        warning = weights.get("warning")
        if isinstance(warning, str) and warning and warning not in info.weights_warnings:
            info.weights_warnings.append(warning)
        versions = _dict(record.get("versions"))
        for side in ("local", "remote"):
            if isinstance(versions.get(side), dict):
                info.versions.setdefault(side, {k: str(v) for k, v in versions[side].items()})
        hosts = _dict(record.get("host"))
        for side in ("local", "remote"):
            if isinstance(hosts.get(side), dict):
                info.hosts.setdefault(side, hosts[side])
        _add_host_cpu(info, record)
        _add_devices(info, record)
        if record.get("status") == "ok":
            for counter, prefix in ((info.delivery_ends, "delivery"), (info.downlink_ends, "downlink")):
                end = record.get(f"{prefix}_end")
                if isinstance(end, str):
                    counter[str(record.get(f"{prefix}_end_reason") or end)] += 1
    info.machines = machines(measured)
    return info


def _add_devices(info: Provenance, record: dict[str, Any]) -> None:
    for side in ("ue", "edge"):
        device = _dict(record.get(f"{side}_device"))
        name = str(device.get("name") or "host (record without a device block)")
        mechanism = str(device.get("mechanism") or "none")
        info.devices[side][f"{name}: {mechanism}"] += 1
        if device.get("name"):
            info.device_descriptions.setdefault(name, f"{device.get('description', '')} Sources: "
                                                      f"{device.get('source', '')}")
        if side == "ue" and device.get("late_cause"):
            info.late_stretches[str(device["late_cause"])] += 1


def _add_trace_starts(info: Provenance, profile: dict[str, Any]) -> None:
    for direction in ("uplink", "downlink"):
        trace = _dict(_dict(profile.get(direction)).get("trace"))
        start = trace.get("start_s", 0.0)
        if trace.get("path") and isinstance(start, (int, float)):
            key = (str(profile.get("name")), direction, str(trace["path"]).rsplit("/", 1)[-1])
            info.trace_starts.setdefault(key, set()).add(float(start))


def _add_host_cpu(info: Provenance, record: dict[str, Any]) -> None:
    """Both nodes' windows: stolen and total host CPU summed over records, CPU wait per record."""
    waits = []
    for side in ("local_resources", "remote_resources"):
        window = _dict(record.get(side))
        steal, total, waited = (window.get(k) for k in ("host_cpu_stolen_ms", "host_cpu_ms", "host_cpu_wait_ms"))
        if isinstance(steal, (int, float)) and isinstance(total, (int, float)):
            info.host_cpu_stolen_ms += steal
            info.host_cpu_ms += total
        if isinstance(waited, (int, float)):
            waits.append(waited)
    if waits:
        info.host_cpu_wait_ms.append(sum(waits))


def _tcp_label(tcp: dict[str, Any]) -> str:
    """`cubic, slow start after idle on` per end namespace, from the topology's recorded TCP sysctls."""
    sides = []
    for side in ("ue", "edge"):
        settings = _dict(tcp.get(side))
        if settings:
            idle = {0: "off", 1: "on"}.get(int(settings.get("tcp_slow_start_after_idle", -1)), "?")
            sides.append(f"{side}: {settings.get('tcp_congestion_control', '?')}, slow start after idle {idle}")
    return "; ".join(sides) or "not recorded"
