"""A cell: N UE namespaces sharing one emulated link to one edge, with a per-UE scheduler on the shared uplink.

    [ns u0] u0 --+
    [ns u1] u1 --+-- p0..pN-1 [bridge br] lb <==> lu [LinkProcess] le <==> ed [ns edge]
    ...          |   (all in ns link)
    [ns uN-1] ---+

The UEs' veths join a bridge inside the link namespace; a veth pair inside that namespace (lb, lu) hands the
bridge's traffic to the userspace link, which forwards it to the edge as for one UE. The uplink's bottleneck
queue is a per-UE scheduler (netem.link.cellsched: `rr` deficit round robin, `pf` proportional fair) instead of
a FIFO, so the profile's uplink rate is the cell's capacity shared by all UEs; delay, jitter and loss apply to
every UE's frames as the profile says (each frame draws its own jitter and loss). The downlink is one shared
FIFO at the profile's downlink rate.

Only the userspace link can do this: the kernel backend has no per-UE scheduler over a shared rate here, so a
cell refuses `backend="kernel"` with one line saying so (`auto` picks the userspace link).

Names follow netem.naming (`sb<pid>-<n>` + role: `u0`..`uv` for UE namespaces and their veths, `p0`.. for the
bridge ports): a killed run's namespaces are swept at the next start like a Topology's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pyroute2 import IPRoute

from netem.errors import TopologyError, UnsupportedProfileError
from netem.naming import object_name
from netem.netns import create_namespace
from netem.offload import disable_offloads
from netem.profile import LinkProfile
from netem.tcp import set_congestion_control, tcp_settings
from netem.topology import NUD_PERMANENT, Topology
from netem.userspace import UserspaceLink

MAX_UES = 32
CELL_SCHEDULERS = ("rr", "pf")
#: UE i's address is 198.18.x.(UE_HOST_BASE + i); the edge keeps .2.
UE_HOST_BASE = 10
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def cell_profile(profile: LinkProfile, scheduler: str) -> LinkProfile:
    """The profile with its uplink queue replaced by the per-UE scheduler (limits kept, now per UE)."""
    if scheduler not in CELL_SCHEDULERS:
        raise TopologyError(f"cell scheduler {scheduler!r}: it must be one of {', '.join(CELL_SCHEDULERS)}")
    if profile.uplink.rate_mbit is None and profile.uplink.trace is None:
        raise TopologyError(f"profile {profile.name!r} has no uplink rate or trace: a cell needs a shared capacity "
                            "to schedule (give [uplink].rate_mbit)")
    uplink = dataclasses.replace(profile.uplink, queue_discipline=scheduler)  # type: ignore[arg-type]  # checked above
    return dataclasses.replace(profile, uplink=uplink)


class CellTopology(Topology):
    """`ues` UE namespaces + one edge behind one userspace link; a context manager like Topology.

    Side names: "ue" (= UE 0, so single-UE code keeps working), "ue0" .. "ue<N-1>", "edge", "link".
    `ue_namespaces`, `ue_addrs`: per UE. `scheduler`: "rr" or "pf" for the shared uplink.
    """

    def __init__(self, profile: LinkProfile | str, ues: int = 2, scheduler: str = "rr",
                 backend: str = "auto", **kwargs: Any) -> None:
        if backend == "kernel":
            raise UnsupportedProfileError(
                "a cell of several UEs is userspace only: the kernel backend has no per-UE scheduler over a "
                "shared rate here; use backend='userspace' (or auto)")
        if backend not in ("auto", "userspace"):
            raise TopologyError(f"backend {backend!r}: a cell runs on the userspace link ('auto' or 'userspace')")
        if not isinstance(ues, int) or not 1 <= ues <= MAX_UES:
            raise TopologyError(f"ues = {ues!r} is outside [1, {MAX_UES}]")
        base = profile if isinstance(profile, LinkProfile) else LinkProfile.load(profile)
        super().__init__(cell_profile(base, scheduler), "userspace", **kwargs)
        self.scheduler = scheduler
        self.n_ues = ues
        third = self.ue_addr.split(".")[2]
        self.ue_namespaces = [object_name(self.prefix, "u" + _DIGITS[i]) for i in range(ues)]
        self.ue_ifnames = list(self.ue_namespaces)  # each in its own namespace
        self.port_ifnames = [object_name(self.prefix, "p" + _DIGITS[i]) for i in range(ues)]
        self.ue_addrs = [f"198.18.{third}.{UE_HOST_BASE + i}" for i in range(ues)]
        self.bridge_ifname = object_name(self.prefix, "br")
        self.link_bridge_ifname = object_name(self.prefix, "lb")
        self.ns_ue, self.ue_ifname, self.ue_addr = self.ue_namespaces[0], self.ue_ifnames[0], self.ue_addrs[0]

    # -- sides ---------------------------------------------------------------------------------------------
    def _ue_index(self, side: str) -> int | None:
        if side == "ue":
            return 0
        if side.startswith("ue") and side[2:].isdigit() and int(side[2:]) < self.n_ues:
            return int(side[2:])
        return None

    def namespace(self, side: str) -> str:
        index = self._ue_index(side)
        return self.ue_namespaces[index] if index is not None else super().namespace(side)

    @property
    def sides(self) -> tuple[str, ...]:
        return tuple(f"ue{i}" for i in range(self.n_ues)) + ("edge", "link")

    def address(self, side: str) -> str:
        index = self._ue_index(side)
        return self.ue_addrs[index] if index is not None else super().address(side)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["cell"] = {"ues": self.n_ues, "scheduler": self.scheduler, "ue_namespaces": list(self.ue_namespaces),
                        "ue_addresses": list(self.ue_addrs), "shared": "uplink rate (per-UE scheduler) and "
                        "downlink rate (one FIFO); delay, jitter and loss per frame as the profile says"}
        return info

    def ue_stats(self) -> dict[str, dict[str, int]]:
        """Frames and bytes the uplink scheduler chose per UE address while UEs were backlogged (link stats)."""
        uplink = self.stats()["link"].get("uplink", {})
        per_ue = uplink.get("scheduled_per_ue") if isinstance(uplink, dict) else None
        return dict(per_ue or {})

    # -- building ------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.backend = "userspace"
        self.ns_link = object_name(self.prefix, "ln")
        namespaces = [*self.ue_namespaces, self.ns_edge, self.ns_link]
        if self._guardian is not None:
            self._guardian.namespaces = namespaces
            self._guardian.start()
        for namespace in namespaces:
            create_namespace(namespace)
            self._created.append(namespace)
            with IPRoute(netns=namespace, flags=0) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        with IPRoute(netns=self.ns_link, flags=0) as ipr:
            ipr.link("add", ifname=self.bridge_ifname, kind="bridge")
        for ns_ue, ue_if, port in zip(self.ue_namespaces, self.ue_ifnames, self.port_ifnames, strict=True):
            self._veth(ns_ue, ue_if, self.ns_link, port)
        self._veth(self.ns_link, self.link_bridge_ifname, self.ns_link, self.link_ue_ifname)
        self._veth(self.ns_edge, self.edge_ifname, self.ns_link, self.link_edge_ifname)
        with IPRoute(netns=self.ns_link, flags=0) as ipr:
            bridge = ipr.link_lookup(ifname=self.bridge_ifname)[0]
            for port in (*self.port_ifnames, self.link_bridge_ifname):
                ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=bridge)
        for ifname in (*self.port_ifnames, self.link_bridge_ifname, self.bridge_ifname):
            self._bring_up(self.ns_link, ifname, address=None)
        for ifname in (self.link_ue_ifname, self.link_edge_ifname):
            self._bring_up(self.ns_link, ifname, address=None, promisc=True)
        for ns_ue, ue_if, addr in zip(self.ue_namespaces, self.ue_ifnames, self.ue_addrs, strict=True):
            self._bring_up(ns_ue, ue_if, address=addr)
        self._bring_up(self.ns_edge, self.edge_ifname, address=self.edge_addr)
        self._static_neighbours()
        self._disable_offloads()
        self._configure_tcp()
        self._link = UserspaceLink(self.profile, self.ns_link, self.link_ue_ifname, self.link_edge_ifname,
                                   rt_priority=self._link_rt_priority, options=self.link_options)
        self._link.start()

    def _static_neighbours(self) -> None:
        edge_mac = self._macs[self.edge_ifname]
        for ns_ue, ue_if, addr in zip(self.ue_namespaces, self.ue_ifnames, self.ue_addrs, strict=True):
            with IPRoute(netns=ns_ue, flags=0) as ipr:
                ipr.neigh("add", dst=self.edge_addr, lladdr=edge_mac, ifindex=ipr.link_lookup(ifname=ue_if)[0],
                          state=NUD_PERMANENT)
            with IPRoute(netns=self.ns_edge, flags=0) as ipr:
                ipr.neigh("add", dst=addr, lladdr=self._macs[ue_if],
                          ifindex=ipr.link_lookup(ifname=self.edge_ifname)[0], state=NUD_PERMANENT)

    def _disable_offloads(self) -> None:
        assert self.ns_link is not None
        ends = [*zip(self.ue_namespaces, self.ue_ifnames, strict=True), (self.ns_edge, self.edge_ifname)]
        ends += [(self.ns_link, name) for name in (*self.port_ifnames, self.link_bridge_ifname,
                                                    self.link_ue_ifname, self.link_edge_ifname)]
        for namespace, ifname in ends:
            state = disable_offloads(namespace, ifname)
            self._offloads[f"{namespace}:{ifname}"] = state
            if state["still_on"] and any("segmentation" in n or "gro" in n for n in state["still_on"]):
                raise TopologyError(f"offloads still on for {ifname}: {', '.join(state['still_on'])} (the userspace "
                                    "link would see frames above the MTU)")

    def _configure_tcp(self) -> None:
        for namespace in (*self.ue_namespaces, self.ns_edge):
            if self.tcp_congestion_control is not None:
                set_congestion_control(namespace, self.tcp_congestion_control)
        self._tcp = {"requested_congestion_control": self.tcp_congestion_control,
                     "ue": tcp_settings(self.ue_namespaces[0]), "edge": tcp_settings(self.ns_edge)}

    def _interface_counters(self) -> dict[str, Any]:
        counters = {}
        sides = [(f"ue{i}", ns, ifname) for i, (ns, ifname) in enumerate(zip(self.ue_namespaces, self.ue_ifnames, strict=True))]
        for side, namespace, ifname in [*sides, ("edge", self.ns_edge, self.edge_ifname)]:
            with IPRoute(netns=namespace, flags=0) as ipr:
                link = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]
                stats = link.get_attr("IFLA_STATS64") or {}
                counters[side] = {key: stats.get(key, 0) for key in
                                  ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped")}
        return counters

