"""The issue's scripted drop, on the real testbed: the uplink goes from 144 to 5 Mbit/s under a live session and
the adaptive policy, running in the local node, moves from the large input-layer partition to one with smaller
intermediate data within REACTION_BOUND inferences; every answer equals the unsplit model's; the AIPS events
follow the lifetime rules at each switch; the outputs (records, link events, plot, summary) are written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from splitbed.scenario import parse, run
from splitbed.scenario.summary import check_aips_lifetime, reactions, switches
from tests.integration.scenario.conftest import assert_correct, scenario_table

pytestmark = pytest.mark.root

# Stated bound: inferences *started after* the drop that still run on the old partition. The first one measures
# the slow link (~1 s for 602 kB at 5 Mbit/s); the EWMA of time per bit then predicts the switch. One more is
# allowed for an inference in flight at the moment of the drop, whose sample is only partly slow.
REACTION_BOUND = 2
DROP_AT_S = 3.0
# 5.5 s after the drop: under load 7 (five test runs beside it) 4 s left only 2 inferences after the switch.
DURATION_S = 8.5
# Raw sizes 602,112 / 50,176 / 31,360 bytes. With a UE UE_SLOWDOWN x slower than this host the input wins at
# 144 Mbit/s and loses by far at 5 Mbit/s (~1 s on the wire). The slowdown balances the two on a loaded host, where
# head times grow: quiet, block_6's head is ~15 ms (150 ms on the UE: 183 ms predicted against the input's 96); in
# a CI run with 11-33 % of the CPU stolen it was 39 ms, and at 20x (the earlier setting) block_6 came to 904 ms
# against the input's 1040 at 5 Mbit/s, a gain under the 15 % hysteresis, so the policy stayed; at 10x it is
# 472 against 575 after the first slow sample (with the EWMA still at 9.6 Mbit/s) and against ~930 after two.
CANDIDATES = ["input_layer", "block_6_project_BN", "block_13_project_BN"]
UE_SLOWDOWN = 10.0


@pytest.fixture(scope="module")
def drop_run(shared_bed: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    table = scenario_table(
        name="drop-test", workload={"partition": "adaptive", "duration_s": DURATION_S, "inferences": 200, "gap_ms": 150},
        policy={"candidates": CANDIDATES, "ue_slowdown": UE_SLOWDOWN, "probe_repetitions": 3},
        step=[{"at_s": DROP_AT_S, "label": "144 -> 5 Mbit/s", "uplink": {"rate_mbit": 5.0, "queue_bytes": 62500}}])
    return run(parse(table), tmp_path_factory.mktemp("drop"), testbed=shared_bed)


def test_policy_leaves_the_large_partition_within_the_stated_number_of_inferences(drop_run: Any) -> None:
    rows = drop_run.inferences
    assert drop_run.problems == []
    assert [e["label"] for e in drop_run.link_events] == ["144 -> 5 Mbit/s"]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
    before = [r for r in rows if r["scenario"]["t_start_s"] < drop_run.link_events[0]["applied_s"]]
    assert len(before) >= 5 and before[-1]["partition_name"] == "input_layer", (
        f"at 144 Mbit/s with a {UE_SLOWDOWN:g}x slower UE the policy should send the input: "
        f"{[(r['partition_name'], r['adaptive']['predicted_e2e_ms']) for r in before[-3:]]}")
    (reaction,) = reactions(drop_run.rows, drop_run.link_events, base_capacity_mbit=144.0)
    assert reaction.partition_before == "input_layer" and reaction.capacity_after == 5.0
    assert reaction.inferences_to_react is not None and reaction.inferences_to_react <= REACTION_BOUND, reaction
    after = [r for r in rows if r["scenario"]["t_start_s"] >= drop_run.link_events[0]["applied_s"]]
    moved = after[reaction.inferences_to_react:]
    assert len(moved) >= 3
    assert all(r["raw_intermediate_bytes"] < 602_112 for r in moved), [r["partition_name"] for r in moved]
    first = moved[0]
    assert first["adaptive"]["reason"] == "switch" and first["adaptive"]["previous"]["partition"] == "input_layer"
    assert first["adaptive"]["rate_estimate_mbit"] < 20, first["adaptive"]
    # What the policy saw: the slow inference's sample is never faster than the link's new rate, and equals it
    # within 10 % unless TCP had to recover from losses. A sender whose window was still sized for 144 Mbit/s
    # (not idle past its RTO) bursts it into the 100 ms queue: one CI run saw 519 segments retransmitted and a
    # 4.3 Mbit/s sample, which is what that transfer achieved, not a link error.
    slow = after[reaction.inferences_to_react - 1] if reaction.inferences_to_react else None
    if slow is not None and slow["scenario"]["t_start_s"] >= drop_run.link_events[0]["done_s"]:
        sample = slow["adaptive"]["rate_sample_mbit"]
        assert sample <= 5.0 * 1.02, slow["adaptive"]
        if slow["uplink_retransmitted_segments"] == 0:
            assert sample == pytest.approx(5.0, rel=0.1), slow["adaptive"]


def test_every_inference_equals_the_unsplit_model(drop_run: Any, reference: Any) -> None:
    expected = reference.unsplit("builtin:chelsea")
    for row in drop_run.inferences + [r for r in drop_run.warmup_rows if r.get("status") == "ok"]:
        assert reference.same_weights_as(row["weights"])
        assert_correct(row, expected)


def test_each_switch_sends_a_new_aips_that_the_remote_follows(drop_run: Any) -> None:
    rows = drop_run.inferences
    assert check_aips_lifetime(rows) == []
    moves = switches(rows)
    assert moves and moves[0]["from"] == "input_layer"
    by_index = {r["scenario"]["index"]: r for r in rows}
    for move in moves:
        row = by_index[move["index"]]
        events = row["aips_events"]
        assert row["aips_sent"] and row["aips_reason"] == "partition_changed"
        previous_id = by_index[move["index"] - 1]["aips_id"]
        assert row["aips_id"] != previous_id
        # the shape differs between these partitions, so docs/FORMAT.md's precedence names shape_changed
        assert {"event": "ended", "aips_id": previous_id, "reason": "shape_changed"}.items() <= events[0].items()
        assert events[1]["event"] == "activated" and events[1]["aips_id"] == row["aips_id"]
        assert events[1]["partition_id"] == row["partition_id"]
    same = [r for r in rows[1:] if not r["aips_sent"]]
    assert same and all(r["aips_events"] == [] and r["aips_reason"] == "reused" for r in same)
    assert len({r["session_id"] for r in rows}) == 1  # the link changed under one live session


def test_outputs_line_up_with_the_timeline(drop_run: Any) -> None:
    out: Path = drop_run.out_dir
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["scenario"]["index"] for r in rows] == list(range(len(rows)))
    (event,) = [json.loads(line) for line in (out / "link_events.jsonl").read_text().splitlines()]
    assert event["error"] is None and 0 <= event["late_ms"] < 200 and event["uplink_capacity_mbit"] == 5.0
    for row in rows:  # link in force at each inference's start, from the applied event's monotonic time
        started_after = row["scenario"]["start_ns"] >= event["start_ns"]
        assert row["scenario"]["link_profile"] == ("drop-test.s1" if started_after else "5g-split-ai")
    png = (out / "timeline.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    summary = (out / "summary.md").read_text()
    assert "## Reaction to capacity drops" in summary and "lifetime check: all rules hold" in summary
    assert "input_layer` -> `" in summary
