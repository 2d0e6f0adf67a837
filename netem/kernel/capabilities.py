"""What this host's kernel can shape with: probe each qdisc kind for real in a scratch namespace.

A probe is the only honest answer: `lsmod` misses built-in schedulers, and this machine's kernel has no sch_netem
at all ("Specified qdisc kind is unknown"). The probe creates `sb<pid>-..pr`, tries to add each root qdisc on its
loopback, records the kernel's answer, and removes the namespace. Results are cached per process.
"""

from __future__ import annotations

import errno
import functools
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError

from netem.kernel.netem_qdisc import netem_message, netem_parameters, send
from netem.naming import new_prefix, object_name
from netem.netns import create_namespace, remove_namespace
from netem.profile import DirectionProfile

PROBED_KINDS = ("netem", "tbf", "pfifo", "bfifo")


@dataclass(frozen=True)
class QdiscProbe:
    kind: str
    available: bool
    detail: str


@functools.cache
def probe_qdiscs() -> dict[str, QdiscProbe]:
    """{kind: QdiscProbe} for netem, tbf, pfifo, bfifo, probed once per process."""
    prefix, _ = new_prefix()
    namespace = object_name(prefix, "pr")
    create_namespace(namespace)
    results: dict[str, QdiscProbe] = {}
    try:
        with IPRoute(netns=namespace, flags=0) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            for kind in PROBED_KINDS:
                results[kind] = _probe_one(ipr, lo, kind)
    finally:
        remove_namespace(namespace)
    return results


def kernel_has(kind: str) -> bool:
    return probe_qdiscs()[kind].available


def _probe_one(ipr: IPRoute, index: int, kind: str) -> QdiscProbe:
    try:
        if kind == "netem":
            params = netem_parameters(DirectionProfile(delay_ms=1.0))
            send(ipr, netem_message(index, 0x10000, 0xFFFFFFFF, params),
                 NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        elif kind == "tbf":
            ipr.tc("add", "tbf", index, 0x10000, rate=125_000, burst=3028, limit=30_000)
        else:
            ipr.tc("add", kind, index, 0x10000, limit=100)
    except NetlinkError as exc:
        if exc.code == errno.ENOENT:
            return QdiscProbe(kind, False, f"the kernel has no sch_{kind} ('Specified qdisc kind is unknown')")
        return QdiscProbe(kind, False, f"kernel refused a {kind} qdisc: {exc.args[-1]} (errno {exc.code})")
    ipr.tc("del", index=index, handle=0x10000, parent=0xFFFFFFFF)
    return QdiscProbe(kind, True, f"sch_{kind} present (added and removed a root {kind} qdisc)")
