"""Turn segmentation/receive offloads and tx checksum offload off on a veth end, and report what stuck.

Why: with TSO/GSO/GRO on, a veth carries up to 64 KB "super-packets"; a userspace forwarder would see frames far
above the MTU and a qdisc would shape, delay and drop whole bursts as one packet, so loss and rate figures would
be wrong. With tx checksum offload on, frames read from an AF_PACKET socket can carry unfinished checksums. This
is `ethtool -K dev tso off gso off gro off tx off`, done through pyroute2's ethtool support inside the namespace.
"""

from __future__ import annotations

from typing import Any

from pyroute2.ethtool import Ethtool

from netem.errors import TopologyError
from netem.netns import run_in_namespace

KEY_FEATURES = ("tx-tcp-segmentation", "tx-generic-segmentation", "rx-gro", "tx-checksum-ip-generic")
"""Features that must end up off; their final state is recorded in Topology.describe()."""


def _to_disable(name: str) -> bool:
    return "segmentation" in name or name.startswith(("rx-gro", "tx-checksum"))


def disable_offloads(namespace: str, ifname: str) -> dict[str, Any]:
    """Disable offloads on `ifname` inside `namespace`; returns {"features": {name: on?}, "still_on": [...]}.

    Raises TopologyError when the ethtool calls fail altogether; features the driver keeps fixed on are listed in
    `still_on` (the caller decides whether that is fatal).
    """

    def work() -> dict[str, Any]:
        with Ethtool() as ethtool:
            current = ethtool.get_features(ifname)
            for name, feature in current.features.items():
                if _to_disable(name) and feature.enable and feature.available:
                    feature.enable = False
            ethtool.set_features(ifname, current)
            after = ethtool.get_features(ifname).features
        state = {name: bool(after[name].enable) for name in KEY_FEATURES if name in after}
        still_on = sorted(name for name, feature in after.items() if _to_disable(name) and feature.enable)
        return {"method": "pyroute2.ethtool (ioctl)", "features": state, "still_on": still_on}

    try:
        return run_in_namespace(namespace, work)
    except Exception as exc:
        raise TopologyError(
            f"cannot turn offloads off on {ifname} in {namespace}: {exc}; "
            f"try by hand: ip netns exec {namespace} ethtool -K {ifname} tso off gso off gro off tx off"
        ) from exc
