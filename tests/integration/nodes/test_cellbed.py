"""One edge node serving the UEs of a cell at once (splitbed.cellbed): every UE's inferences come back, each
record says which UE and how many shared the cell, and the edge's queueing is in the records."""

from __future__ import annotations

import pytest

from splitbed.cellbed import CellTestbed

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.requires("netns"), pytest.mark.timeout(900)]


def test_one_edge_serves_two_ues_concurrently() -> None:
    with CellTestbed("5g-split-ai", ues=2, models=["mobilenet_v2"], weights="random:0") as bed:
        records = bed.run({"model": "mobilenet_v2", "partition": "block_3_project_BN", "repetitions": 3})
        addrs = bed.topology.ue_addrs  # type: ignore[union-attr]
    assert [r["status"] for r in records] == ["ok"] * 6
    assert sorted(r["cell"]["ue"] for r in records) == [0, 0, 0, 1, 1, 1]
    assert {r["cell"]["ues"] for r in records} == {2}
    assert {r["link"]["ue_addr"] for r in records} == set(addrs)
    assert all(r["remote_concurrent_sessions"] == 2 for r in records)  # both sessions open on the one edge
    assert all(r["remote_queue_wait_ms"] >= 0 for r in records)
    # the edge had both UEs' inferences in hand together: their spans on the edge's clock overlap
    spans = {ue: (min(r["timestamps_ns"]["remote_first_byte"] for r in records if r["cell"]["ue"] == ue),
                  max(r["timestamps_ns"]["remote_tail_end"] for r in records if r["cell"]["ue"] == ue))
             for ue in (0, 1)}
    assert spans[0][0] <= spans[1][1] and spans[1][0] <= spans[0][1], spans
