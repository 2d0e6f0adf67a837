"""What a scenario run is judged by, on hand-made rows: the AIPS lifetime check catches each broken rule, reaction
counts are counted from the applied change, inferences are placed on the timeline (link in force, outage overlap,
time after the link came back), and the timeline thread applies changes in order, not early, and records
failures."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from netem.profile import LinkProfile
from splitbed.scenario import parse
from splitbed.scenario.plot import capacity_series, timeline_png
from splitbed.scenario.runner import _overlaps
from splitbed.scenario.summary import check_aips_lifetime, reactions, summary_markdown, switches
from splitbed.scenario.timeline import AppliedEvent, Timeline

SCENARIO = parse({"name": "t", "profile": "5g-split-ai", "workload": {"model": "mobilenet_v2", "inferences": 9},
                  "step": [{"at_s": 1.0, "uplink": {"rate_mbit": 5}}, {"at_s": 2.0, "outage_s": 1.0}]})


def row(index: int, partition: str, pid: int, *, session: str = "s1", sent: bool = False, reason: str = "reused",
        aips_id: int = 1, events: list[dict[str, Any]] | None = None, shape: tuple[int, ...] = (1, 28, 28, 32),
        status: str = "ok", t: float | None = None) -> dict[str, Any]:
    start = t if t is not None else index * 0.25
    return {"record_type": "inference", "encoding": "tlv", "status": status, "session_id": session,
            "partition_name": partition, "partition_id": pid, "aips_sent": sent, "aips_reason": reason,
            "aips_id": aips_id, "aips_events": events or [], "tensors": [{"shape": list(shape)}],
            "raw_intermediate_bytes": 4 * math.prod(shape), "compression_profile": "none",
            "error": None if status == "ok" else {"code": "timeout", "fatal": True}, "e2e_latency_ms": 50.0,
            "adaptive": None,
            "scenario": {"index": index, "t_start_s": start, "t_end_s": start + 0.1, "start_ns": int(start * 1e9),
                         "end_ns": int((start + 0.1) * 1e9), "outage_overlap_ms": 0.0}}


def activated(aips_id: int, pid: int) -> dict[str, Any]:
    return {"event": "activated", "aips_id": aips_id, "partition_id": pid}


def ended(aips_id: int, reason: str) -> dict[str, Any]:
    return {"event": "ended", "aips_id": aips_id, "reason": reason}


def good_rows() -> list[dict[str, Any]]:
    return [row(0, "input_layer", 0, sent=True, reason="first_data", events=[activated(1, 0)], shape=(1, 224, 224, 3)),
            row(1, "input_layer", 0, shape=(1, 224, 224, 3)),
            row(2, "block_3_project_BN", 5, sent=True, reason="partition_changed", aips_id=2,
                events=[ended(1, "shape_changed"), activated(2, 5)]),
            row(3, "block_3_project_BN", 5, aips_id=2),
            row(4, "block_3_project_BN", 5, aips_id=2, status="error"),
            row(5, "block_3_project_BN", 5, session="s2", sent=True, reason="first_data", events=[activated(1, 5)])]


def test_a_correct_run_passes_the_lifetime_check() -> None:
    assert check_aips_lifetime(good_rows()) == []
    assert [(s["index"], s["from"], s["to"]) for s in switches(good_rows())] == [(2, "input_layer",
                                                                                  "block_3_project_BN")]


@pytest.mark.parametrize(("index", "change", "message"), [
    (2, {"aips_events": [activated(2, 5)]}, "did not end AIPS 1 with shape_changed"),
    (2, {"aips_events": [ended(1, "new_aips_other_id"), activated(2, 5)]}, "did not end AIPS 1 with shape_changed"),
    (2, {"aips_events": [ended(1, "shape_changed"), activated(2, 4)]}, "did not activate AIPS 2 for partition 5"),
    (2, {"aips_reason": "compression_changed"}, "the partition changed but aips_reason is compression_changed"),
    (2, {"aips_sent": False, "aips_events": [], "aips_id": 1}, "ran on the AIPS of partition 0 without a new AIPS"),
    (3, {"aips_events": [ended(2, "reset")]}, "lifecycle events without a new AIPS"),
    (3, {"tensors": [{"shape": [1, 14, 14, 64]}]}, "changed from [[1, 28, 28, 32]] without a new AIPS"),
    (5, {"aips_sent": False, "aips_events": []}, "first inference of session s2 sent no AIPS"),
])
def test_each_broken_rule_is_reported(index: int, change: dict[str, Any], message: str) -> None:
    rows = good_rows()
    rows[index].update(change)
    problems = check_aips_lifetime(rows)
    assert any(message in p for p in problems), problems


def test_a_session_that_began_before_the_rows_runs_on_the_aips_it_already_had() -> None:
    """A testbed's warm-up ran on the session first: the scenario's first row sends no AIPS, legitimately."""
    rows = [dict(r, session_inference_index=i + 3) for i, r in enumerate(good_rows()[1:5])]
    assert check_aips_lifetime(rows) == []
    # ... but from then on the rules hold: a partition change without a new AIPS is still caught
    rows[1].update(aips_sent=False, aips_events=[], aips_id=1)
    assert any("ran on the AIPS of partition 0 without a new AIPS" in p for p in check_aips_lifetime(rows))
    # a session whose first inference is in the rows (index 0) must send an AIPS
    fresh = [dict(good_rows()[1], session_inference_index=0)]
    assert any("sent no AIPS" in p for p in check_aips_lifetime(fresh))


def test_reaction_counts_inferences_started_after_the_applied_drop() -> None:
    rows = [row(i, "input_layer", 0, t=0.3 * i) for i in range(5)] + \
        [row(i, "block_13_project_BN", 10, t=0.3 * i) for i in range(5, 8)]
    events = [{"kind": "change", "label": "drop", "at_s": 0.8, "applied_s": 0.8, "uplink_capacity_mbit": 5.0},
              {"kind": "change", "label": "up", "at_s": 2.5, "applied_s": 2.5, "uplink_capacity_mbit": 144.0}]
    (drop,) = reactions(rows, events, base_capacity_mbit=144.0)
    assert reactions(rows, events) == []  # no capacity known before the first change: no drop to react to
    # started after 0.8 s on input_layer: 0.9, 1.2 -> two inferences, then block_13 at 1.5 s
    assert (drop.partition_before, drop.inferences_to_react, drop.partition_after) == ("input_layer", 2,
                                                                                        "block_13_project_BN")
    assert drop.seconds_to_react == pytest.approx(1.5 - 0.8)
    (none,) = reactions(rows[:5], [{"kind": "change", "label": "s", "at_s": 0, "applied_s": 0,
                                    "uplink_capacity_mbit": 144.0}, events[0]])
    assert none.inferences_to_react is None


def test_inferences_are_placed_on_the_applied_timeline() -> None:
    down, back = SCENARIO.events[1], SCENARIO.events[2]
    applied = [AppliedEvent(SCENARIO.events[0], int(1.0e9), int(1.001e9)),
               AppliedEvent(down, int(2.0e9), int(2.001e9)), AppliedEvent(back, int(3.0e9), int(3.001e9))]
    spanning = row(0, "x", 0)
    spanning["scenario"].update(start_ns=int(1.8e9), end_ns=int(3.4e9))
    placed = _overlaps(spanning, applied, int(9e9), SCENARIO)
    assert placed["link_profile"] == "t.s1" and placed["uplink_capacity_mbit"] == 5.0
    assert placed["outage_overlap_ms"] == pytest.approx(1000.0)
    assert placed["after_link_return_ms"] == pytest.approx(400.0)
    assert placed["link_changes_during"] == ["outage 1 s", "link back after 1 s"]
    early = row(0, "x", 0)
    early["scenario"].update(start_ns=int(0.1e9), end_ns=int(0.2e9))
    assert _overlaps(early, applied, int(9e9), SCENARIO)["link_profile"] == "5g-split-ai"
    unended = row(0, "x", 0)  # the run stopped inside an outage: overlap up to the run's end
    unended["scenario"].update(start_ns=int(2.5e9), end_ns=int(2.9e9))
    assert _overlaps(unended, applied[:2], int(2.9e9), SCENARIO)["outage_overlap_ms"] == pytest.approx(400.0)


def test_timeline_applies_in_order_never_early_and_records_failures() -> None:
    scenario = parse({"name": "t", "profile": "5g-split-ai", "workload": {"model": "mobilenet_v2", "inferences": 1},
                      "step": [{"at_s": 0.05, "uplink": {"rate_mbit": 5}}, {"at_s": 0.1, "uplink": {"rate_mbit": 7}},
                               {"at_s": 0.15, "uplink": {"rate_mbit": 9}}]})
    seen: list[tuple[float | None, int]] = []

    def apply(profile: LinkProfile) -> None:
        seen.append((profile.uplink.rate_mbit, time.monotonic_ns()))
        if profile.uplink.rate_mbit == 7:
            raise RuntimeError("link process refused it")

    timeline = Timeline(scenario.events, apply)
    t0 = timeline.start()
    deadline = time.monotonic() + 10
    while len(timeline.applied) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    timeline.stop()
    assert [rate for rate, _ in seen] == [5, 7, 9]
    for (_, when), event in zip(seen, scenario.events, strict=True):
        assert when >= t0 + event.at_s * 1e9
    assert [a.error for a in timeline.applied] == [None, "RuntimeError: link process refused it", None]
    assert [e.event.at_s for e in timeline.errors] == [0.1]


def test_stop_cancels_what_is_not_due_yet() -> None:
    calls = threading.Event()
    timeline = Timeline(parse({"name": "t", "profile": "5g-split-ai",
                               "workload": {"model": "mobilenet_v2", "inferences": 1},
                               "step": [{"at_s": 60.0, "uplink": {"rate_mbit": 5}}]}).events,
                        lambda profile: calls.set())
    timeline.start()
    started = time.monotonic()
    timeline.stop()
    assert time.monotonic() - started < 5 and not calls.is_set() and timeline.applied == []


def test_plot_and_summary_from_rows(tmp_path: Path) -> None:
    rows = good_rows()
    events = [{"kind": "change", "label": "uplink.rate_mbit=5", "at_s": 1.0, "applied_s": 1.0, "late_ms": 0.1,
               "step": 0, "profile": "t.s1", "uplink_capacity_mbit": 5.0, "error": None},
              {"kind": "outage_start", "label": "outage 1 s", "at_s": 2.0, "applied_s": 2.0, "late_ms": 0.1,
               "step": 1, "profile": "t.s2-outage", "uplink_capacity_mbit": 0.0, "error": None},
              {"kind": "outage_end", "label": "link back", "at_s": 3.0, "applied_s": 3.0, "late_ms": 0.1,
               "step": 1, "profile": "t.s1", "uplink_capacity_mbit": 5.0, "error": None}]
    points = capacity_series(SCENARIO, events, 4.0)
    assert points[0] == (0.0, LinkProfile.load("5g-split-ai").uplink.rate_mbit) and (1.0, 5.0) in points and (2.0, 0.0) in points and (3.0, 5.0) in points
    png = timeline_png(SCENARIO, rows, events, tmp_path / "t.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    text = summary_markdown(SCENARIO, rows, events, ["a problem"])
    assert "lifetime check: all rules hold" in text and "**problem:** a problem" in text
    assert "| 2 | 0.50 | input_layer | block_3_project_BN |" in text
