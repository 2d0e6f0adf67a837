"""Userspace backend: the `netem.link` forwarder process in the middle namespace, bridging its two veth ends.

This adapter gives the topology the same small surface as KernelLink (start/update/stats/describe/stop); the
link process itself (stages, forwarder, counters) belongs to netem/link/.

Scheduling: the link is a measurement instrument whose timing is the measurement, so its process runs
SCHED_FIFO (priority 10 by default; netem.link applies it, ForwarderOptions.realtime_priority). Measured here on
a 2-core host at load average ~8: ping RTT through a 2 x 10 ms link had p99 38-46 ms under normal scheduling
and 20.5-20.7 ms with SCHED_FIFO. What was applied is in describe()["process"]["scheduling"].
"""

from __future__ import annotations

from typing import Any

from netem.errors import TopologyError
from netem.link import ForwarderOptions, LinkProcess
from netem.profile import LinkProfile

DEFAULT_RT_PRIORITY = 10


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
        options: ForwarderOptions | None = None,
    ) -> None:
        """`rt_priority`: SCHED_FIFO priority (1-99) for the link process, or None for normal scheduling;
        `options`: a whole netem.link.ForwarderOptions instead (its realtime_priority wins over `rt_priority`)."""
        if rt_priority is not None and not 1 <= rt_priority <= 99:
            raise ValueError(f"rt_priority must be in 1..99 or None, not {rt_priority}")
        self.profile = profile
        self.namespace = namespace
        self.ue_ifname = ue_ifname
        self.edge_ifname = edge_ifname
        self.rt_priority = rt_priority
        self.options = options
        self.process: LinkProcess | None = None

    def start(self) -> None:
        options = self.options
        if options is None:
            options = ForwarderOptions(realtime_priority=self.rt_priority or 0)
        self.process = LinkProcess.start(self.namespace, self.ue_ifname, self.edge_ifname, self.profile,
                                          options=options)

    def update(self, profile: LinkProfile) -> None:
        self._running().update(profile)
        self.profile = profile

    def stats(self) -> dict[str, Any]:
        return dict(self._running().stats())

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"namespace": self.namespace, "ue_interface": self.ue_ifname,
                                "edge_interface": self.edge_ifname, "requested_rt_priority": self.rt_priority if self.options is None else self.options.realtime_priority}
        if self.process is not None:
            info["pid"] = self.process.pid
            info["process"] = self.process.describe()
        return info

    def _running(self) -> LinkProcess:
        if self.process is None:
            raise TopologyError("the userspace link is not running (start() first)")
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            try:
                self.process.stop()
            finally:
                self.process = None

