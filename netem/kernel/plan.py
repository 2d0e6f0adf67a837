"""Kernel backend, planning: which qdiscs shape each direction with qdiscs on the sending veth end (tc netem + tbf + fifo via pyroute2).

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

from netem.errors import UnsupportedProfileError
from netem.kernel.netem_qdisc import netem_parameters
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
        return {"kind": self.kind, "handle": handle_text(self.handle), "parent": handle_text(self.parent),
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


def handle_text(handle: int) -> str:
    if handle == ROOT:
        return "root"
    return f"{handle >> 16:x}:{handle & 0xFFFF:x}"
