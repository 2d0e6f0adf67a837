"""Userspace backend: the `netem.link` forwarder process in the middle namespace, bridging its two veth ends.

This adapter gives the topology the same small surface as KernelLink (start/update/stats/describe/stop); the
link process itself (stages, forwarder, counters) belongs to netem/link/.
"""

from __future__ import annotations

from typing import Any

from netem.errors import BackendUnavailableError
from netem.profile import LinkProfile


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

    def __init__(self, profile: LinkProfile, namespace: str, ue_ifname: str, edge_ifname: str) -> None:
        self.profile = profile
        self.namespace = namespace
        self.ue_ifname = ue_ifname
        self.edge_ifname = edge_ifname
        self.process: Any = None

    def start(self) -> None:
        self.process = link_process_class().start(self.namespace, self.ue_ifname, self.edge_ifname, self.profile)

    def update(self, profile: LinkProfile) -> None:
        self.process.update(profile)
        self.profile = profile

    def stats(self) -> dict[str, Any]:
        return dict(self.process.stats())

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"namespace": self.namespace, "ue_interface": self.ue_ifname,
                                "edge_interface": self.edge_ifname}
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
