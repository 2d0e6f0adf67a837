"""Repetitions placed along a capacity trace: TraceRef.start_s in profiles, in the link's stages, and the
sweep's stratified start per repetition."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from netem.errors import ProfileError
from netem.link.pipeline import build_stages
from netem.link.stages import ThroughputTraceStage
from netem.profile import DirectionProfile, LinkProfile, TraceRef, trace_from_dict
from splitbed.trace_phases import at_repetition, is_trace_driven, start_s


@pytest.fixture
def steps(tmp_path: Path) -> str:
    path = tmp_path / "steps.tput"
    path.write_text("# interval_ms: 500\n10\n20\n30\n40\n")  # period 2 s
    return str(path)


def test_trace_start_is_read_validated_and_written_only_when_set(steps: str) -> None:
    assert trace_from_dict({"path": steps, "kind": "throughput", "start_s": 1.5}).start_s == 1.5
    plain = trace_from_dict({"path": steps, "kind": "throughput"})
    assert plain.start_s == 0.0 and "start_s" not in plain.to_dict()  # old profiles and records stay as they were
    assert plain.starting_at(0.75).to_dict() == {"path": steps, "kind": "throughput", "start_s": 0.75}
    for bad in (-1.0, float("nan"), float("inf"), 1e9):
        with pytest.raises(ProfileError, match="start_s"):
            TraceRef(steps, "throughput", bad)
    with pytest.raises(ProfileError, match="start_s"):
        trace_from_dict({"path": steps, "kind": "throughput", "start_s": "soon"})


@pytest.mark.parametrize(("start", "rate"), [(0.0, 10.0), (0.5, 20.0), (1.25, 30.0), (1.75, 40.0), (3.6, 40.0)])
def test_the_links_trace_stage_replays_from_the_start(steps: str, start: float, rate: float) -> None:
    now = time.monotonic_ns()
    direction = DirectionProfile(trace=TraceRef(steps, "throughput", start))
    stage = next(s for s in build_stages(direction, now) if isinstance(s, ThroughputTraceStage))
    assert stage.rate_mbit_at(now) == rate  # 3.6 s wraps to 1.6 s of the 2 s period


def test_repetitions_are_spread_evenly_over_the_whole_trace(steps: str) -> None:
    link = LinkProfile("t", "d", "s", DirectionProfile(trace=TraceRef(steps, "throughput"), delay_ms=1.0),
                       DirectionProfile(delay_ms=1.0))
    assert is_trace_driven(link) and not is_trace_driven(LinkProfile.load("5g-split-ai"))
    placed = [at_repetition(link, k, 4) for k in range(5)]
    assert [p.uplink.trace.start_s for p in placed if p.uplink.trace] == [0.0, 0.5, 1.0, 1.5, 0.0]  # k wraps
    assert all(p.downlink == link.downlink and p.uplink.delay_ms == 1.0 for p in placed)
    driving = LinkProfile.load("5g-mmwave-driving")
    assert [at_repetition(driving, k, 10).uplink.trace.start_s for k in (0, 1, 9)] == [0.0, 180.0, 1620.0]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="repetitions"):
        start_s(10.0, 0, 0)
