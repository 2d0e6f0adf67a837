"""Userspace backend: the `netem.link` forwarder process in the middle namespace, bridging its two veth ends.

This adapter gives the topology the same small surface as KernelLink (start/update/stats/describe/stop); the
link process itself (stages, forwarder, counters) belongs to netem/link/.

Scheduling: the link is a measurement instrument whose timing is the measurement, so by default its process
runs SCHED_FIFO (priority 10). Measured here on a 2-core host at load average ~8: ping RTT through a 2 x 10 ms
link had p99 38-46 ms under normal scheduling and 20.5-20.7 ms with SCHED_FIFO. The link sleeps in poll/select
between due times (it does not spin by default) and the kernel's RT throttling (95 % per second) still bounds
it. The policy applied (or why it could not be) is in describe()["scheduling"].
"""

from __future__ import annotations

import os
from typing import Any

from netem.errors import BackendUnavailableError
from netem.profile import LinkProfile

DEFAULT_RT_PRIORITY = 10


def link_process_class() -> Any:
    """netem.link.LinkProcess, or BackendUnavailableError saying why it cannot be used."""
    try:
        from netem.link import LinkProcess
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the userspace link (netem.link.LinkProcess) is not available: {exc}"
        ) from exc
    return LinkProcess


class UserspaceLink:
    """Runs one LinkProcess for a topology; `namespace` is the middle ("link") namespace."""

    def __init__(
        self,
        profile: LinkProfile,
        namespace: str,
        ue_ifname: str,
        edge_ifname: str,
        *,
        rt_priority: int | None = DEFAULT_RT_PRIORITY,
    ) -> None:
        """`rt_priority`: SCHED_FIFO priority (1-99) for the link process, or None for normal scheduling."""
        if rt_priority is not None and not 1 <= rt_priority <= 99:
            raise ValueError(f"rt_priority must be in 1..99 or None, not {rt_priority}")
        self.profile = profile
        self.namespace = namespace
        self.ue_ifname = ue_ifname
        self.edge_ifname = edge_ifname
        self.rt_priority = rt_priority
        self.scheduling: dict[str, Any] = {"policy": "SCHED_OTHER"}
        self.process: Any = None

    def start(self) -> None:
        self.process = link_process_class().start(self.namespace, self.ue_ifname, self.edge_ifname, self.profile)
        if self.rt_priority is not None:
            self.scheduling = set_realtime(int(self.process.pid), self.rt_priority)

    def update(self, profile: LinkProfile) -> None:
        self.process.update(profile)
        self.profile = profile

    def stats(self) -> dict[str, Any]:
        return dict(self.process.stats())

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"namespace": self.namespace, "ue_interface": self.ue_ifname,
                                "edge_interface": self.edge_ifname, "scheduling": self.scheduling}
        if self.process is not None:
            info["pid"] = getattr(self.process, "pid", None)
            describe = getattr(self.process, "describe", None)
            if callable(describe):
                info["process"] = describe()
        return info

    def stop(self) -> None:
        if self.process is not None:
            try:
                self.process.stop()
            finally:
                self.process = None


def set_realtime(pid: int, priority: int) -> dict[str, Any]:
    """SCHED_FIFO for every thread of `pid` (threads made later inherit it); reports what was applied."""
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError as exc:
        return {"policy": "SCHED_OTHER", "error": f"cannot list threads of {pid}: {exc.strerror}"}
    try:
        for tid in threads:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:  # no CAP_SYS_NICE (rootless user namespace, container without it)
        return {"policy": "SCHED_OTHER", "error": f"SCHED_FIFO refused: {exc.strerror}; timing may suffer on a "
                "busy host"}
    return {"policy": "SCHED_FIFO", "priority": priority, "threads": len(threads)}
