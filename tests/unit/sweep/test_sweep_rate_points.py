"""Rate sweeps in the plan: one point per (profile, uplink rate), the rate in the point key, resolved to the
profile with only its uplink rate replaced (validated as profiles are)."""

from __future__ import annotations

import pytest

from netem.profile import LinkProfile
from splitbed.sweep.plan import SweepSpec, SweepSpecError, link_profile, points


def test_each_rate_is_a_point_of_each_profile_and_part_of_the_key() -> None:
    spec = SweepSpec(baselines=(), profiles=("5g-split-ai", "lte"), models=("mobilenet_v2",), partitions=("out_relu",),
                     rates=(10.0, 20.0, 50.0, 100.0))
    found = points(spec)
    assert [p.profile for p in found] == [f"{name}@{rate}mbit" for name in ("5g-split-ai", "lte")
                                          for rate in (10, 20, 50, 100)]
    assert len({p.key for p in found}) == 8
    assert points(SweepSpec(baselines=(), models=("mobilenet_v2",), partitions=("out_relu",)))[0].key.startswith("5g-split-ai|")


def test_a_rate_point_is_its_profile_with_the_uplink_rate_replaced() -> None:
    base, link = LinkProfile.load("lte"), link_profile("lte@20mbit")
    assert link.uplink.rate_mbit == 20 and link.uplink.delay_ms == base.uplink.delay_ms
    assert link.uplink.jitter_ms == base.uplink.jitter_ms and link.downlink == base.downlink
    traced = link_profile("5g-mmwave-driving@50mbit")
    assert traced.uplink.trace is None and traced.uplink.rate_mbit == 50
    with pytest.raises(SweepSpecError, match="outside"):
        points(SweepSpec(baselines=(), models=("mobilenet_v2",), partitions=("out_relu",), rates=(200_000.0,)))
