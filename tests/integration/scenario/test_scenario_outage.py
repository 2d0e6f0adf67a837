"""Outages under a live session, on the real testbed (both directions drop every packet, then the link is put
back): a short outage stalls the inference in flight, which completes in the same session once TCP retransmits
and its record shows the stall; an outage longer than the deadline turns the inference into a clear `timeout`
error within that deadline, nothing hangs, and after the link returns a new session carries on with a new AIPS."""

from __future__ import annotations

from typing import Any

import pytest

from splitbed.scenario import parse, run
from splitbed.scenario.summary import check_aips_lifetime, stalls
from tests.integration.scenario.conftest import assert_correct, scenario_table

pytestmark = pytest.mark.root

SLACK_S = 0.5  # scheduling and process wake-up on 2 shared cores, beyond a deadline


def test_short_outage_stalls_the_inference_which_completes_in_the_same_session(
        shared_bed: Any, reference: Any, tmp_path: Any) -> None:
    table = scenario_table(name="outage-test",
                           workload={"partition": "input_layer", "duration_s": 6.0, "inferences": 100, "gap_ms": 100,
                                     "deadline_s": 10},
                           step=[{"at_s": 1.5, "outage_s": 2.0}])
    result = run(parse(table), tmp_path, testbed=shared_bed)
    rows = result.inferences
    assert result.problems == [] and [e["kind"] for e in result.link_events] == ["outage_start", "outage_end"]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
    assert len({r["session_id"] for r in rows}) == 1, "the session must survive a 2 s outage"
    expected = reference.unsplit("builtin:chelsea")
    for row in rows:
        assert_correct(row, expected)
    (stalled, *others) = stalls(result.rows)
    assert others == [], "with a 100 ms gap only one inference can span the outage"
    row = next(r for r in rows if r["scenario"]["index"] == stalled["index"])
    info = row["scenario"]
    # The outage (or what is left of it after local_start) fell inside this inference's send-to-result window:
    # data and ACKs were lost until the link came back, then TCP's retransmission completed it.
    stamps = row["timestamps_ns"]
    before_send_ms = (stamps["local_first_send"] - stamps["local_start"]) / 1e6
    after_result_ms = (stamps["local_end"] - stamps["local_result_received"]) / 1e6
    assert row["round_trip_ms"] >= info["outage_overlap_ms"] - before_send_ms - after_result_ms - 1.0
    assert info["after_link_return_ms"] is not None and 0 < info["after_link_return_ms"] < 10_000
    normal = [r["round_trip_ms"] for r in rows if r is not row]
    assert row["round_trip_ms"] > 5 * max(normal)
    assert check_aips_lifetime(result.rows) == []
    assert "## Inferences during outages" in (tmp_path / "summary.md").read_text()


def test_outage_longer_than_the_deadline_times_out_then_a_new_session_carries_on(
        shared_bed: Any, tmp_path: Any) -> None:
    deadline = 2.0
    table = scenario_table(name="timeout-test",
                           workload={"partition": "block_6_project_BN", "duration_s": 9.0, "inferences": 100,
                                     "gap_ms": 150, "deadline_s": deadline},
                           step=[{"at_s": 1.5, "outage_s": 5.0}])
    result = run(parse(table), tmp_path, testbed=shared_bed)
    rows = result.rows
    outage_start, outage_end = (e["applied_s"] for e in result.link_events)
    for row in rows:  # nothing hangs: every inference (or refused session set-up) ends within its deadline
        info = row["scenario"]
        assert (info["end_ns"] - info["start_ns"]) / 1e9 <= deadline + SLACK_S, row.get("error")
    failed = [r for r in rows if r["status"] != "ok"]
    assert failed and all(r["scenario"]["t_end_s"] > outage_start and r["scenario"]["t_start_s"] < outage_end
                          for r in failed)
    assert all(r["error"]["code"] == "timeout" for r in failed), [r["error"] for r in failed]
    first = failed[0]
    assert first["record_type"] == "inference" and first["error"]["fatal"], first["error"]
    assert f"inference deadline {deadline:g} s" in first["error"]["message"]
    before = [r for r in rows if r["scenario"]["t_end_s"] < outage_start]
    after = [r for r in rows if r["scenario"]["t_start_s"] >= outage_end]
    assert before and all(r["status"] == "ok" for r in before)
    assert len(after) >= 3 and all(r["status"] == "ok" for r in after), [r.get("error") for r in after]
    assert {r["session_id"] for r in before}.isdisjoint({r["session_id"] for r in after})
    resumed = next(r for r in rows if r["status"] == "ok" and r["scenario"]["t_start_s"] > outage_start)
    assert resumed["aips_sent"] and resumed["aips_reason"] == "first_data"
    assert [e["event"] for e in resumed["aips_events"]] == ["activated"]  # fresh decoder: nothing to end
    assert check_aips_lifetime(rows) == []
