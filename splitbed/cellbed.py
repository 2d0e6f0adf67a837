"""`CellTestbed`: N UE nodes sharing one emulated cell (netem.cell) and one edge node, all running a job at once.

    with CellTestbed("5g-split-ai", ues=4, scheduler="rr", models=["mobilenet_v2"], weights="random:0") as bed:
        records = bed.run({"model": "mobilenet_v2", "partition": "block_6_expand", "repetitions": 5})

A Testbed whose topology is a CellTopology: one remote (edge) node, one driven local node per UE namespace,
started by Testbed's own start step (over TCP every UE node beside the edge node, models preloaded). `run`
sends the same job to every UE at the same moment and returns all their records, each with `cell`: which UE
(`ue`, `ue_addr`), how many shared the cell (`ues`), the uplink scheduler, and whether the host's CPU rather
than the cell was the bottleneck. The edge serves the sessions concurrently; its queueing is in each record
(`remote_queue_wait_ms`: the wait for the edge's inference lock before the tail starts;
`remote_concurrent_sessions`).

Host CPU: every UE runs its head on this host. When more compute processes (N UE nodes + the edge) run than
the host has usable cores, inferences wait for CPU and compute times grow with N whatever the cell does; the
record says so (`host_cpu_bottleneck`, with the counts it is decided from: a statement about the setup, not a
measurement of contention) and carries the measured share of the inference's window in which some task waited
for a CPU (`host_cpu_pressure_share`, PSI), so a latency rise with N is not read as the cell's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from netem.cell import CellTopology
from splitbed.nodes.jobs import Job
from splitbed.testbed import (
    INFERENCE_TIMEOUT_S,
    JOB_BASE_TIMEOUT_S,
    Testbed,
    TestbedError,
    _job_dict,
)


def usable_cores() -> int:
    """CPUs this process may run on (affinity), the host's compute budget for N heads and the tail."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_pressure_share(record: dict[str, Any]) -> float | None:
    """Share of the UE's inference window in which some task of the host waited for a CPU (measured: PSI
    "some", the record's local_resources host_cpu_wait_ms / wall_ms); None where the kernel has no PSI."""
    resources = record.get("local_resources")
    if not isinstance(resources, dict):
        return None
    wait, wall = resources.get("host_cpu_wait_ms"), resources.get("wall_ms")
    if not isinstance(wait, (int, float)) or not isinstance(wall, (int, float)) or wall <= 0:
        return None
    return min(1.0, float(wait) / float(wall))


class CellTestbed(Testbed):
    """Testbed with `ues` UE nodes behind one CellTopology (`scheduler`: "rr" or "pf"); process runtime only."""

    __test__ = False

    def __init__(self, profile: Any, ues: int = 2, scheduler: str = "rr", **kwargs: Any) -> None:
        kwargs.setdefault("cpus", "none")  # the default plan pins one UE node; N of them share the host's cores
        if kwargs.get("runtime", "process") != "process":
            raise TestbedError("a cell testbed runs its nodes as processes (runtime='process')")
        super().__init__(profile, "userspace", **kwargs)
        self.ues = ues
        self.scheduler = scheduler

    def _make_topology(self) -> CellTopology:
        return CellTopology(self.profile, ues=self.ues, scheduler=self.scheduler,
                            tcp_congestion_control=self.tcp_congestion_control)

    def _ue_sides(self) -> list[str]:
        return [f"ue{i}" for i in range(self.ues)]

    def _run_everywhere(self, spec: dict[str, Any], deadline: float, what: str) -> list[dict[str, Any]]:
        return self._run_all(spec, deadline, what)

    def run(self, job: Job | Mapping[str, Any]) -> list[dict[str, Any]]:
        """The job on every UE at once: all records (UE 0's first), each with its `cell` block."""
        spec = _job_dict(job)
        timeout = JOB_BASE_TIMEOUT_S + INFERENCE_TIMEOUT_S * int(spec.get("repetitions", 1)) * self.ues
        return self._run_all(spec, time.monotonic() + timeout, f"job {spec.get('model')}/{spec.get('partition')}")

    def cell_info(self, ue: int) -> dict[str, Any]:
        """What a record's `cell` holds for UE `ue`."""
        assert isinstance(self.topology, CellTopology)
        cores = usable_cores()
        compute = self.ues + 1
        return {"ue": ue, "ues": self.ues, "ue_addr": self.topology.ue_addrs[ue], "scheduler": self.scheduler,
                "host_cpu_bottleneck": compute > cores, "compute_processes": compute, "usable_cores": cores,
                "host_cpu_basis": "N UE nodes + the edge node against this host's usable cores (a statement about "
                                  "the setup, not a measured contention)"}

    def _run_all(self, spec: dict[str, Any], deadline: float, what: str) -> list[dict[str, Any]]:
        results: list[list[dict[str, Any]] | BaseException] = [[] for _ in self.locals]
        spec.setdefault("link", self.link_info())  # once: the link process answers one control request at a time

        def one(i: int) -> None:
            try:
                records = self._run(dict(spec), deadline=deadline, what=f"{what} on UE {i}", local=self.locals[i],
                                    lines=self._ue_lines[i])
                info = self.cell_info(i)
                for record in records:
                    record["cell"] = dict(info, host_cpu_pressure_share=cpu_pressure_share(record))
                    if isinstance(record.get("link"), dict):
                        record["link"] = dict(record["link"], ue_addr=info["ue_addr"])
                results[i] = records
            except BaseException as exc:  # re-raised below in the caller's thread
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,), name=f"cellbed-run-ue{i}") for i in range(self.ues)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out: list[dict[str, Any]] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            out += result
        return out
