"""Each built-in profile reproduces the TCP figure it claims ([expected_tcp], from its source): one iperf3 TCP
flow per claimed direction, goodput after slow start within 5 % of the claim (netem.tcpcheck, the same code as
`netem tcp-check`, whose stored figures docs/PROFILES.md shows).

Default selection: the default profile (5g-split-ai, kernel or userspace link as `auto` picks) and
5g-mmwave-static (the userspace link with loss and jitter: the case where an assumed residual loss once held TCP
at 90-98 of a cited 142 Mbit/s). Every other profile runs under --full; a trace-driven one (5g-mmwave-driving)
on a stretch of its trace without outages, where TCP must carry 1448/1514 of the stretch's capacity. A descheduled VM idles the link for lack
of data, so the lower bar holds in the best of GOODPUT_ATTEMPTS transfers (host_attempts.best_of); the upper bar
(no more than the claim + 5 %) holds in every attempt: no host load makes a link carry more than its rate."""

from __future__ import annotations

import pytest

from netem.profile import LinkProfile, builtin_profiles
from netem.tcpcheck import (
    TOLERANCE,
    TcpGoodput,
    check_profile,
    claimed_directions,
    expected_of,
    trace_directions,
    within_claim,
)
from tests.integration.netem.host_attempts import best_of

pytestmark = [pytest.mark.root, pytest.mark.requires("netns", "iperf3"), pytest.mark.timeout(300)]

GOODPUT_ATTEMPTS = 3
DEFAULT_SELECTION = {"5g-split-ai", "5g-mmwave-static"}
CLAIMING = [p.name for p in builtin_profiles() if claimed_directions(p) or trace_directions(p)]


def _cases() -> list[object]:
    return [pytest.param(name, marks=() if name in DEFAULT_SELECTION else pytest.mark.slow, id=name)
            for name in CLAIMING]


@pytest.mark.parametrize("name", _cases())
def test_tcp_through_the_profile_reaches_what_it_claims(name: str) -> None:
    profile = LinkProfile.load(name)
    assert profile.expected_tcp is not None

    def measure() -> list[TcpGoodput]:
        results = check_profile(profile)
        assert [r.direction for r in results] == [*claimed_directions(profile), *trace_directions(profile)]
        for result in results:
            claim = expected_of(profile, result)
            assert claim is not None
            assert result.goodput_mbit <= claim * (1 + TOLERANCE), f"more than the link can carry: {result}"
        return results

    def meets(results: list[TcpGoodput]) -> bool:
        return all(within_claim(r.goodput_mbit, expected_of(profile, r) or 0.0) for r in results)

    best_of(GOODPUT_ATTEMPTS, measure, meets,
            f"TCP goodput within {TOLERANCE:.0%} of {name}'s claim {profile.expected_tcp.to_dict()}")


def test_every_builtin_with_a_shaped_direction_is_checked() -> None:
    shaped = {p.name for p in builtin_profiles()
              if any(d.rate_mbit is not None or d.trace is not None for d in (p.uplink, p.downlink))}
    assert shaped <= set(CLAIMING) and DEFAULT_SELECTION <= set(CLAIMING)
