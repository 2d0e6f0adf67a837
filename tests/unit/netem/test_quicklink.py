"""Quick links (`netem shell --rate/--delay/--loss [--uplink-only]`): units as tc and mahimahi write them, fields
of a profile overridden, and the same validation as a profile file (netem.quicklink)."""

from __future__ import annotations

import pytest

from netem.errors import ProfileError
from netem.profile import LinkProfile, RandomLoss
from netem.quicklink import QuickLinkError, parse_delay, parse_loss, parse_rate, quick_profile


def test_units() -> None:
    assert parse_rate("20") == 20 and parse_rate("20mbit") == 20 and parse_rate("1gbit") == 1000
    assert parse_rate("500kbit") == pytest.approx(0.5) and parse_rate("20Mbit/s") == 20
    assert parse_delay("10") == 10 and parse_delay("0.5s") == 500 and parse_delay("250us") == pytest.approx(0.25)
    assert parse_loss("0.1%") == pytest.approx(0.001) and parse_loss("0.001") == pytest.approx(0.001)
    for bad in ("fast", "-5", "20 furlongs", ""):
        with pytest.raises(QuickLinkError, match="is not a rate"):
            parse_rate(bad)
    with pytest.raises(QuickLinkError, match="write 5%"):
        parse_loss("5")


def test_a_quick_link_alone_is_both_directions_and_named_for_its_values() -> None:
    link = quick_profile(None, rate="20", delay="10", loss="0.1%")
    assert link.name == "quick-r20-d10-l0.1pct"
    for direction in (link.uplink, link.downlink):
        assert direction.rate_mbit == 20 and direction.delay_ms == 10
        assert direction.loss == RandomLoss(0.001)
    assert "rate 20 Mbit/s, one-way delay 10 ms, random loss 0.1% in both directions" in link.description


def test_options_override_fields_of_a_profile_and_keep_the_others() -> None:
    lte = LinkProfile.load("lte")
    link = quick_profile(lte, rate="20", uplink_only=True)
    assert link.uplink.rate_mbit == 20 and link.uplink.delay_ms == lte.uplink.delay_ms
    assert link.uplink.jitter_ms == lte.uplink.jitter_ms and link.uplink.loss == lte.uplink.loss
    assert link.downlink == lte.downlink
    assert link.name == "lte-r20-up" and lte.source in link.source and "overridden" in link.source
    driving = LinkProfile.load("5g-mmwave-driving")  # a rate replaces the capacity trace
    fixed = quick_profile(driving, rate="100")
    assert fixed.uplink.trace is None and fixed.uplink.rate_mbit == 100
    assert quick_profile(lte) is lte


def test_values_are_checked_as_a_profile_file_is() -> None:
    with pytest.raises(ProfileError, match=r"\[uplink\] rate_mbit = 200000.0 is outside \(0, 100000\]"):
        quick_profile(None, rate="200gbit")
    with pytest.raises(ProfileError, match=r"loss.p = 1.5 is outside \[0, 1\]"):
        quick_profile(None, loss="150%")
    with pytest.raises(ProfileError, match="no link given"):
        quick_profile(None)
