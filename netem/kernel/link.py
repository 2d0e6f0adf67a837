"""Kernel backend, applying: install, change live and read the qdisc chains of netem.kernel.plan on the sending
veth ends, through pyroute2 (netlink; never `tc`)."""

from __future__ import annotations

from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError

from netem.errors import TopologyError
from netem.kernel.netem_qdisc import netem_message, send
from netem.kernel.plan import ROOT, QdiscSpec, handle_text, plan_direction
from netem.profile import LinkProfile


class KernelLink:
    """Installs, changes and reads the qdisc chains of both directions of a two-namespace topology."""

    def __init__(self, profile: LinkProfile, ends: dict[str, tuple[str, str]]) -> None:
        """`ends` maps "uplink"/"downlink" to (namespace, ifname) of the veth end that SENDS that direction."""
        self.profile = profile
        self.ends = ends
        self.plans = {name: plan_direction(profile.direction(name)) for name in ("uplink", "downlink")}

    def start(self) -> None:
        for name, chain in self.plans.items():
            self._install(name, chain, replace=False)

    def update(self, profile: LinkProfile) -> None:
        """Change the link live; same chain shape -> qdiscs changed in place (queues kept), else rebuilt."""
        new_plans = {name: plan_direction(profile.direction(name)) for name in ("uplink", "downlink")}
        for name, chain in new_plans.items():
            old = self.plans[name]
            same_shape = [(s.kind, s.handle, s.parent) for s in old] == [(s.kind, s.handle, s.parent) for s in chain]
            if same_shape:
                self._install(name, chain, replace=True)
            else:
                self._clear(name)
                self._install(name, chain, replace=False)
        self.plans = new_plans
        self.profile = profile

    def stats(self) -> dict[str, Any]:
        """Per direction: packets/bytes sent, drops, queue length now, from the kernel's qdisc counters."""
        result: dict[str, Any] = {}
        for name, (namespace, ifname) in self.ends.items():
            with IPRoute(netns=namespace, flags=0) as ipr:
                index = _index(ipr, ifname)
                qdiscs = []
                for msg in ipr.get_qdiscs(index=index):
                    counters = msg.get_attr("TCA_STATS") or {}
                    qdiscs.append({
                        "kind": msg.get_attr("TCA_KIND"),
                        "handle": handle_text(msg["handle"]),
                        "packets": counters.get("packets", 0),
                        "bytes": counters.get("bytes", 0),
                        "drops": counters.get("drop", 0),
                        "overlimits": counters.get("overlimits", 0),
                        "qlen": counters.get("qlen", 0),
                        "backlog_bytes": counters.get("backlog", 0),
                    })
            root = next((q for q in qdiscs if q["kind"] in ("netem", "tbf")), None)
            result[name] = {
                "packets_forwarded": root["packets"] if root else None,
                "bytes_forwarded": root["bytes"] if root else None,
                "dropped": sum(q["drops"] for q in qdiscs if q["kind"] in ("netem", "tbf", "pfifo", "bfifo")),
                "queued_now": sum(q["qlen"] for q in qdiscs if q["kind"] in ("tbf", "pfifo", "bfifo")),
                "qdiscs": qdiscs,
            }
        return result

    def describe(self) -> dict[str, Any]:
        return {name: {"namespace": self.ends[name][0], "interface": self.ends[name][1],
                       "qdiscs": [spec.to_dict() for spec in chain]}
                for name, chain in self.plans.items()}

    def stop(self) -> None:
        """Nothing to do: the qdiscs vanish with the namespaces."""

    # -------------------------------------------------------------------------------------------------------
    def _install(self, name: str, chain: list[QdiscSpec], *, replace: bool) -> None:
        namespace, ifname = self.ends[name]
        with IPRoute(netns=namespace, flags=0) as ipr:
            index = _index(ipr, ifname)
            for spec in chain:
                try:
                    _apply(ipr, index, spec, replace=replace)
                except NetlinkError as exc:
                    raise TopologyError(
                        f"kernel refused {spec.kind} {handle_text(spec.handle)} on {ifname} in {namespace} "
                        f"({name}): {exc.args[-1]} (errno {exc.code}); parameters {spec.params}"
                    ) from exc

    def _clear(self, name: str) -> None:
        namespace, ifname = self.ends[name]
        if not self.plans[name]:
            return
        with IPRoute(netns=namespace, flags=0) as ipr:
            try:
                ipr.tc("del", index=_index(ipr, ifname), handle=self.plans[name][0].handle, parent=ROOT)
            except NetlinkError as exc:
                raise TopologyError(f"cannot remove the {name} qdiscs on {ifname}: {exc}") from exc


def _apply(ipr: IPRoute, index: int, spec: QdiscSpec, *, replace: bool) -> None:
    if spec.kind == "netem":
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        send(ipr, netem_message(index, spec.handle, spec.parent, spec.params), flags)
        return
    command = "replace" if replace else "add"
    if spec.kind == "tbf":
        ipr.tc(command, "tbf", index, spec.handle, parent=spec.parent, rate=spec.params["rate_bytes_per_s"],
               burst=spec.params["burst_bytes"], limit=spec.params["limit_bytes"])
    elif spec.kind == "pfifo":
        ipr.tc(command, "pfifo", index, spec.handle, parent=spec.parent, limit=spec.params["limit_packets"])
    else:  # pragma: no cover - plan_direction makes only the kinds above
        raise TopologyError(f"no installer for qdisc kind {spec.kind}")


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise TopologyError(f"interface {ifname} not found")
    return int(found[0])
