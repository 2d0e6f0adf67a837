"""Direction pipelines built from profiles: stage order, end-to-end timing, live reconfiguration, counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from netem.errors import TraceError
from netem.link import pipeline as pipeline_module
from netem.link.pipeline import DirectionPipeline, build_stages
from netem.profile import DirectionProfile, GilbertElliott, LinkProfile, RandomLoss, TraceRef, builtin_names

MS = 1_000_000


def stage_names(profile: DirectionProfile) -> list[str]:
    return [stage.name for stage in build_stages(profile, 0)]


def test_builtin_profiles_build_the_expected_stages() -> None:
    expected = {
        "ideal": ([], []),
        "5g-embb": (["loss", "rate", "jitter"], ["loss", "rate", "jitter"]),
        "5g-split-ai": (["rate", "delay"], ["delay"]),
        "5g-mmwave-static": (["loss", "rate", "jitter"], ["jitter"]),
        "5g-mmwave-driving": (["trace", "jitter"], ["jitter"]),
        "cell-edge": (["loss", "rate", "jitter"], ["loss", "rate", "jitter"]),
        "lte": (["loss", "rate", "jitter"], ["jitter"]),
    }
    assert set(builtin_names()) == set(expected)
    for name, (up, down) in expected.items():
        profile = LinkProfile.load(name)
        assert (stage_names(profile.uplink), stage_names(profile.downlink)) == (up, down), name


def test_stage_order_is_loss_then_bottleneck_then_delay() -> None:
    profile = DirectionProfile(rate_mbit=10.0, delay_ms=5.0, loss=RandomLoss(0.1))
    assert stage_names(profile) == ["loss", "rate", "delay"]
    ge = DirectionProfile(loss=GilbertElliott(0.01, 0.5, 0.0, 1.0), jitter_ms=1.0)
    assert stage_names(ge) == ["loss", "jitter"]
    assert stage_names(DirectionProfile(loss=RandomLoss(0.0))) == []


def test_a_packet_takes_serialisation_plus_delay() -> None:
    pipe = DirectionPipeline("uplink", DirectionProfile(rate_mbit=12.0, delay_ms=10.0), 0)
    pipe.push(bytes(1514), 0)
    assert pipe.next_due() == round(1514 * 8 / 12e6 * 1e9)
    assert pipe.pop_due(pipe.next_due()) == []  # left the rate stage, now in the delay stage
    due = pipe.next_due()
    assert due == round(1514 * 8 / 12e6 * 1e9) + 10 * MS
    out = pipe.pop_due(due)  # type: ignore[arg-type]
    assert [(item[0], item[1]) for item in out] == [(due, 0)]
    pipe.record_sent(out[0], due + 5000)  # type: ignore[operator]
    stats = pipe.stats()
    assert stats["tx_packets"] == 1 and stats["rx_bytes"] == 1514
    assert stats["late_ms"]["max"] == 0.005
    assert stats["queued_packets"] == 0


def test_pop_due_runs_all_stages_in_one_call_when_late() -> None:
    pipe = DirectionPipeline("uplink", DirectionProfile(rate_mbit=100.0, delay_ms=1.0), 0)
    for _ in range(5):
        pipe.push(bytes(1000), 0)
    out = pipe.pop_due(50 * MS)  # the loop woke up long after every due time
    assert len(out) == 5
    assert [item[0] for item in out] == [(k + 1) * 80_000 + MS for k in range(5)]


def test_reconfigure_keeps_frames_in_flight_and_counters() -> None:
    slow = DirectionProfile(rate_mbit=1.0, queue_packets=100)
    pipe = DirectionPipeline("downlink", slow, 0)
    frames = [bytes([i]) * 1000 for i in range(10)]
    for frame in frames:
        pipe.push(frame, 0)
    assert pipe.held_packets() == 10
    carried = pipe.reconfigure(DirectionProfile(rate_mbit=100.0, delay_ms=2.0), 1 * MS)
    assert carried == 10 and pipe.held_packets() == 10
    out = pipe.pop_due(100 * MS)
    assert [item[2] for item in out] == frames
    assert out[0][0] == 1 * MS + 80_000 + 2 * MS  # re-entered at the update time, new rate and delay
    assert pipe.stats()["rx_packets"] == 10


def test_reconfigure_to_ideal_hands_frames_back_to_send_at_once() -> None:
    pipe = DirectionPipeline("uplink", DirectionProfile(delay_ms=50.0), 0)
    pipe.push(b"a" * 100, 0)
    pipe.push(b"b" * 100, 0)
    assert pipe.reconfigure(DirectionProfile(), 5 * MS) == 2
    assert pipe.fast
    assert [item[2] for item in pipe.take_carried()] == [b"a" * 100, b"b" * 100]
    assert pipe.take_carried() == []


def test_drops_survive_reconfiguration() -> None:
    pipe = DirectionPipeline("uplink", DirectionProfile(rate_mbit=1.0, queue_packets=1), 0)
    for _ in range(5):
        pipe.push(bytes(500), 0)
    assert pipe.drops()["queue_overflow"] == 3
    pipe.reconfigure(DirectionProfile(rate_mbit=1.0, queue_packets=1), 0)
    assert pipe.drops()["queue_overflow"] >= 3


def test_bad_trace_raises_before_anything_changes(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tput"
    broken.write_text("10\nfast\n")
    pipe = DirectionPipeline("uplink", DirectionProfile(delay_ms=1.0), 0)
    with pytest.raises(TraceError, match="broken.tput:2"):
        pipe.reconfigure(DirectionProfile(trace=TraceRef(str(broken), "throughput")), 0)
    assert [stage.name for stage in pipe.stages] == ["delay"]


def test_link_full_cap_drops_instead_of_buffering_without_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "MAX_HELD_BYTES", 10_000)
    pipe = DirectionPipeline("uplink", DirectionProfile(delay_ms=60_000.0), 0)
    for _ in range(20):
        pipe.push(bytes(1000), 0)
    assert pipe.held_bytes() == 10_000
    assert pipe.drops()["link_full"] == 10


def test_same_seed_same_losses_and_directions_differ_by_default() -> None:
    profile = LinkProfile.load("cell-edge")

    def losses(direction: DirectionProfile) -> list[int]:
        pipe = DirectionPipeline("uplink", direction.__class__(loss=direction.loss, seed=direction.seed), 0)
        kept = []
        for i in range(3000):
            pipe.push(i.to_bytes(4, "big"), i)
            kept.extend(int.from_bytes(item[2], "big") for item in pipe.pop_due(i))
        return kept

    assert losses(profile.uplink) == losses(profile.uplink)
    assert losses(profile.uplink) != losses(profile.downlink)  # seeds 1 and 2
