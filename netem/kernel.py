"""Kernel backend: shape each direction with qdiscs on the sending veth end (tc netem + tbf + fifo via pyroute2).

Placement, per direction (uplink = egress of the ue end, downlink = egress of the edge end):

    root netem 1:  (delay, jitter, loss; its `limit` is the delay line)      only if delay/jitter/loss
      └─ tbf 10:   (rate, burst; `limit` = queue_bytes)                       only if rate
           └─ pfifo 20: (limit = queue_packets)                              only if the queue counts packets

Without netem, tbf is the root; without rate there is no bottleneck queue to limit (as on an unshaped wire).
Packets are delayed first and then serialised at the rate; one-way latency = delay (+ jitter) + queueing +
serialisation, the same sum the userspace link produces. tbf counts the Ethernet frame (header + IP packet),
the bytes the profile's rate is defined on. tbf `burst` = max(2 full frames, 1 ms at the rate): long-run rate
is exact, short bursts may exceed it by that much.

What the kernel cannot do exactly is refused with UnsupportedProfileError (traces, drophead/codel, limits in both
packets and bytes); `auto` then picks the userspace link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError

from netem.errors import TopologyError, UnsupportedProfileError
from netem.netem_qdisc import netem_message, netem_parameters, send
from netem.profile import DirectionProfile, LinkProfile

ETH_FRAME_MAX = 1514
TBF_MAX_RATE_MBIT = (2**32 - 1) * 8 / 1e6  # tbf's 32-bit bytes/s rate field (64-bit rate attr not used)
ROOT = 0xFFFFFFFF
NETEM_HANDLE, TBF_HANDLE, FIFO_HANDLE = 0x10000, 0xA0000, 0x140000


@dataclass(frozen=True)
class QdiscSpec:
    """One qdisc to install: kind, handle, parent and its parameters (JSON-able, recorded in describe())."""

    kind: str
    handle: int
    parent: int
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "handle": _handle_text(self.handle), "parent": _handle_text(self.parent),
                "params": self.params}


def kernel_problems(direction: DirectionProfile) -> list[str]:
    """Reasons the kernel backend cannot emulate this direction exactly (empty = it can)."""
    problems = []
    if direction.trace is not None:
        problems.append("a capacity trace needs the userspace link (the kernel has no trace-driven qdisc)")
    if direction.queue_discipline != "droptail":
        problems.append(f"queue_discipline {direction.queue_discipline!r}: the kernel backend does droptail only")
    if direction.queue_packets is not None and direction.queue_bytes is not None:
        problems.append("a kernel fifo limits packets or bytes, not both at once")
    if direction.rate_mbit is not None and direction.rate_mbit > TBF_MAX_RATE_MBIT:
        problems.append(f"rate {direction.rate_mbit} Mbit/s is above tbf's 32-bit limit ({TBF_MAX_RATE_MBIT:.0f})")
    return problems


def needs_netem(direction: DirectionProfile) -> bool:
    loss = direction.loss
    return direction.delay_ms > 0 or direction.jitter_ms > 0 or (loss is not None and loss.mean_loss > 0)


def required_kinds(profile: LinkProfile) -> set[str]:
    """Qdisc kinds the kernel must have for this profile."""
    kinds: set[str] = set()
    for direction in (profile.uplink, profile.downlink):
        kinds.update(spec.kind for spec in plan_direction(direction))
    return kinds


def plan_direction(direction: DirectionProfile) -> list[QdiscSpec]:
    """The qdisc chain for one direction, root first (empty for an ideal direction)."""
    problems = kernel_problems(direction)
    if problems:
        raise UnsupportedProfileError("kernel backend: " + "; ".join(problems) + " (use --backend userspace)")
    chain: list[QdiscSpec] = []
    parent = ROOT
    if needs_netem(direction):
        chain.append(QdiscSpec("netem", NETEM_HANDLE, parent, netem_parameters(direction)))
        parent = NETEM_HANDLE | 1
    if direction.rate_mbit is not None:
        rate_bytes = int(round(direction.rate_mbit * 1e6 / 8))
        burst = max(2 * ETH_FRAME_MAX, rate_bytes // 1000)
        packets = direction.effective_queue_packets
        limit = direction.queue_bytes if direction.queue_bytes is not None else (packets or 1) * ETH_FRAME_MAX
        chain.append(QdiscSpec("tbf", TBF_HANDLE, parent,
                               {"rate_bytes_per_s": rate_bytes, "burst_bytes": burst, "limit_bytes": limit}))
        if direction.queue_bytes is None and packets is not None:
            chain.append(QdiscSpec("pfifo", FIFO_HANDLE, TBF_HANDLE | 1, {"limit_packets": packets}))
    return chain


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
                        "handle": _handle_text(msg["handle"]),
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
                        f"kernel refused {spec.kind} {_handle_text(spec.handle)} on {ifname} in {namespace} "
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


def _handle_text(handle: int) -> str:
    if handle == ROOT:
        return "root"
    return f"{handle >> 16:x}:{handle & 0xFFFF:x}"
