"""Topology's `link_options` (the userspace link's ForwarderOptions) and `tcp_congestion_control` (netem.tcp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netem.errors import TopologyError
from netem.link import ForwarderOptions
from netem.netns import list_namespaces
from netem.topology import Topology

pytestmark = [pytest.mark.root, pytest.mark.requires("netns"), pytest.mark.timeout(120)]


def test_link_options_reach_the_link_process() -> None:
    options = ForwarderOptions(batch=7, spin_us=0, realtime_priority=0)
    with Topology("lte", backend="userspace", link_options=options) as topo:
        process = topo.describe()["link"]["process"]
        assert process["options"] == options.to_dict()
        assert topo.stats()["link"]["options"]["batch"] == 7
        assert process["scheduling"] == "SCHED_OTHER (real-time scheduling not requested)"


def test_link_options_are_refused_where_they_cannot_apply() -> None:
    with pytest.raises(ValueError, match="realtime_priority"):
        Topology("lte", link_options=ForwarderOptions(), link_rt_priority=20)
    before = set(list_namespaces())
    topo = Topology("ideal", backend="kernel", link_options=ForwarderOptions())
    with pytest.raises(TopologyError, match="userspace link only"):
        topo.start()
    assert not {name for name in set(list_namespaces()) - before if name.startswith(topo.prefix)}


def test_tcp_congestion_control_is_pinned_recorded_or_inherited() -> None:
    host_default = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    with Topology("ideal", backend="kernel") as topo:
        tcp = topo.describe()["tcp"]
        assert tcp["requested_congestion_control"] == "cubic"
        assert tcp["ue"]["tcp_congestion_control"] == tcp["edge"]["tcp_congestion_control"] == "cubic"
        assert tcp["ue"]["tcp_slow_start_after_idle"] in (0, 1)
        done = topo.run("ue", ["cat", "/proc/sys/net/ipv4/tcp_congestion_control"], timeout=10)
        assert done.stdout.strip() == "cubic"
    with Topology("ideal", backend="kernel", tcp_congestion_control=None) as topo:
        assert topo.describe()["tcp"]["ue"]["tcp_congestion_control"] == host_default
    with pytest.raises(TopologyError, match="available"):
        Topology("ideal", backend="kernel", tcp_congestion_control="nosuchcc").start()
    with pytest.raises(TopologyError, match="not a kernel algorithm name"):
        Topology("ideal", backend="kernel", tcp_congestion_control="../x").start()
