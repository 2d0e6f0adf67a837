"""Encode a kernel `netem` qdisc for one DirectionProfile as a pyroute2 tcmsg (what `tc qdisc add ... netem` sends).

pyroute2's own netem plugin covers neither Gilbert-Elliott loss (TCA_NETEM_LOSS), delay distribution tables
(TCA_NETEM_DELAY_DIST), 64-bit latency nor the PRNG seed, so this module carries a complete attribute map and
is tested against the bytes iproute2's `tc` puts on the netlink socket (tests/integration/netem).

Mapping from the profile (see netem/profile.py for meanings):
- delay/jitter: tc_netem_qopt.latency/jitter in psched ticks, plus TCA_NETEM_LATENCY64/JITTER64 in ns.
- jitter distribution: uniform = no table (the kernel draws uniformly in [D-J, D+J]); normal/pareto = the
  iproute2 table (netem/disttables.py).
- RandomLoss(p): tc_netem_qopt.loss = p * (2^32 - 1).
- GilbertElliott(p, r, h, k) with h/k = LOSS probability in Good/Bad: the kernel's tc_netem_gemodel holds
  {p, r, h = P(deliver | Bad), k1 = P(lose | Good)}, so we send {p, r, 1 - k, h} (checked against
  sch_netem.c loss_gilb_ell: Good loses if rnd < k1, Bad loses if rnd > h).
- seed: TCA_NETEM_PRNG_SEED (Linux >= 6.3 honours it; older kernels ignore the attribute).
- limit: packets netem may hold; it is the delay line here, not the bottleneck queue (tbf/pfifo is).
"""

from __future__ import annotations

from typing import Any

from pyroute2.netlink import nla
from pyroute2.netlink.rtnl import RTM_NEWQDISC
from pyroute2.netlink.rtnl.tcmsg import tcmsg
from pyroute2.netlink.rtnl.tcmsg.common import time2tick

from netem.disttables import distribution_table
from netem.profile import DirectionProfile, GilbertElliott, RandomLoss

U32_MAX = 0xFFFFFFFF
NETEM_DELAY_LINE_LIMIT = 100_000
"""netem `limit` (packets in the delay line): high enough that netem itself never drops at 10 Gbit/s x 100 ms."""


def probability_to_u32(probability: float) -> int:
    """0..1 -> 0..2^32-1, the kernel's fixed-point probability (as iproute2 computes it)."""
    return min(U32_MAX, int(round(probability * U32_MAX)))


class NetemOptions(nla):
    """TCA_OPTIONS of a netem qdisc: struct tc_netem_qopt followed by TCA_NETEM_* attributes."""

    fields = (
        ("delay", "I"),
        ("limit", "I"),
        ("loss", "I"),
        ("gap", "I"),
        ("duplicate", "I"),
        ("jitter", "I"),
    )
    nla_map = (
        (0, "TCA_NETEM_UNSPEC", "none"),
        (1, "TCA_NETEM_CORR", "cdata"),
        (2, "TCA_NETEM_DELAY_DIST", "cdata"),
        (3, "TCA_NETEM_REORDER", "cdata"),
        (4, "TCA_NETEM_CORRUPT", "cdata"),
        (5, "TCA_NETEM_LOSS", "netem_loss"),
        (6, "TCA_NETEM_RATE", "cdata"),
        (7, "TCA_NETEM_ECN", "uint32"),
        (8, "TCA_NETEM_RATE64", "uint64"),
        (9, "TCA_NETEM_PAD", "cdata"),
        (10, "TCA_NETEM_LATENCY64", "int64"),
        (11, "TCA_NETEM_JITTER64", "int64"),
        (12, "TCA_NETEM_SLOT", "cdata"),
        (13, "TCA_NETEM_SLOT_DIST", "cdata"),
        (14, "TCA_NETEM_PRNG_SEED", "uint64"),
    )

    class netem_loss(nla):
        nla_map = (
            (0, "NETEM_LOSS_UNSPEC", "none"),
            (1, "NETEM_LOSS_GI", "cdata"),
            (2, "NETEM_LOSS_GE", "netem_gemodel"),
        )

        class netem_gemodel(nla):
            fields = (("p", "I"), ("r", "I"), ("h", "I"), ("k1", "I"))


class NetemTcmsg(tcmsg):
    """A tcmsg whose TCA_OPTIONS always encode/decode with NetemOptions (used only for netem qdiscs)."""

    @staticmethod
    def get_options(self: Any, *argv: Any, **kwarg: Any) -> type[NetemOptions]:
        return NetemOptions


def netem_parameters(direction: DirectionProfile) -> dict[str, Any]:
    """The netem options for a direction, as a JSON-able dict (also recorded in Topology.describe())."""
    delay_ns = int(round(direction.delay_ms * 1_000_000))
    jitter_ns = int(round(direction.jitter_ms * 1_000_000))
    params: dict[str, Any] = {
        "delay_ns": delay_ns,
        "jitter_ns": jitter_ns,
        "distribution": direction.jitter_distribution if jitter_ns else None,
        "limit": NETEM_DELAY_LINE_LIMIT,
        "loss_u32": 0,
        "gemodel": None,
        "seed": direction.seed,
    }
    if params["distribution"] == "uniform":
        params["distribution"] = None  # the kernel's built-in uniform draw
    loss = direction.loss
    if isinstance(loss, RandomLoss):
        params["loss_u32"] = probability_to_u32(loss.p)
    elif isinstance(loss, GilbertElliott):
        params["gemodel"] = {
            "p": probability_to_u32(loss.p),
            "r": probability_to_u32(loss.r),
            "h": U32_MAX - probability_to_u32(loss.k),  # as tc computes its "1-h" argument
            "k1": probability_to_u32(loss.h),
        }
    return params


def build_netem_options(params: dict[str, Any]) -> dict[str, Any]:
    """NetemOptions field/attribute values from `netem_parameters()` output."""
    delay_us = params["delay_ns"] / 1000
    jitter_us = params["jitter_ns"] / 1000
    attrs: list[list[Any]] = []
    if params["distribution"]:
        table = distribution_table(params["distribution"])
        attrs.append(["TCA_NETEM_DELAY_DIST", b"".join(v.to_bytes(2, "little", signed=True) for v in table)])
    if params["gemodel"]:
        attrs.append(["TCA_NETEM_LOSS", {"attrs": [["NETEM_LOSS_GE", dict(params["gemodel"])]]}])
    attrs.append(["TCA_NETEM_LATENCY64", params["delay_ns"]])
    attrs.append(["TCA_NETEM_JITTER64", params["jitter_ns"]])
    attrs.append(["TCA_NETEM_PRNG_SEED", params["seed"]])
    return {
        "delay": min(U32_MAX, int(time2tick(delay_us))),
        "limit": params["limit"],
        "loss": params["loss_u32"],
        "gap": 0,
        "duplicate": 0,
        "jitter": min(U32_MAX, int(time2tick(jitter_us))),
        "attrs": attrs,
    }


def netem_message(index: int, handle: int, parent: int, params: dict[str, Any]) -> NetemTcmsg:
    """The RTM_NEWQDISC body adding/replacing a netem qdisc on interface `index`."""
    msg = NetemTcmsg()
    msg["family"] = 0
    msg["index"] = index
    msg["handle"] = handle
    msg["parent"] = parent
    msg["info"] = 0
    msg["attrs"] = [["TCA_KIND", "netem"], ["TCA_OPTIONS", build_netem_options(params)]]
    return msg


def send(ipr: Any, msg: NetemTcmsg, flags: int) -> None:
    """Send an RTM_NEWQDISC for a netem qdisc through pyroute2 and wait for the kernel's ACK (or NetlinkError)."""
    # pyroute2 0.9.7's sync nlm_request reads status['nlm_generator'], which IPRoute never sets.
    if "nlm_generator" not in ipr.status:
        ipr.status["nlm_generator"] = False
    ipr.nlm_request(msg, msg_type=RTM_NEWQDISC, msg_flags=flags)
