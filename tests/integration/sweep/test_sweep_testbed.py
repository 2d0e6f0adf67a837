"""The Testbed orchestrator for real: namespaces, the userspace link, both nodes as processes; jobs in, metrics
records out (each naming the link that measured it); bad jobs refused without breaking it; live link change;
a failed start (of a cell too) reports the node's log and leaves nothing behind."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from splitbed.cellbed import CellTestbed
from splitbed.nodes.errors import ConfigurationError
from splitbed.nodes.metrics import check_record
from splitbed.testbed import Testbed, TestbedError
from tests.integration.sweep.conftest import MODEL, PROFILE, WEIGHTS, netns_names

pytestmark = pytest.mark.root

SLOW_PROFILE = """
name = "test-5mbit"
description = "5 Mbit/s uplink, 5 ms each way (a test link)"
source = "test fixture"
[uplink]
rate_mbit = 5.0
delay_ms = 5.0
[downlink]
delay_ms = 5.0
"""


def test_jobs_give_one_valid_record_per_inference_with_the_link_in_each(shared_bed: Testbed) -> None:
    records = shared_bed.run({"model": MODEL, "partition": "block_3_project_BN", "repetitions": 2,
                              "tags": {"case": "basic"}})
    assert len(records) == 2
    for record in records:
        check_record(record)
        assert record["status"] == "ok", record["error"]
        assert record["tags"] == {"case": "basic"}
        assert record["link"]["profile"]["name"] == PROFILE and record["link"]["backend"] == "userspace"
        assert record["link"]["runtime"] == "process"
        assert record["raw_intermediate_bytes"] == 28 * 28 * 32 * 4
        assert 0 < record["delivery_ms"] < record["e2e_latency_ms"]
        assert record["weights"]["source"] == "random"
    assert shared_bed.warmup_records and shared_bed.warmup_records[0]["tags"] == {"warmup": True}
    described = shared_bed.describe()
    assert described["topology"]["backend"] == "userspace" and set(described["nodes"]) == {"edge", "ue"}


def test_a_bad_job_is_refused_and_the_testbed_stays_usable(shared_bed: Testbed) -> None:
    with pytest.raises(TestbedError, match="refused.*no candidate partition 'nope'"):
        shared_bed.run({"model": MODEL, "partition": "nope"})
    with pytest.raises(ConfigurationError, match="unknown job fields"):
        shared_bed.run({"model": MODEL, "colour": "blue"})
    records = shared_bed.run({"model": MODEL, "partition": "out_relu", "encoding": "json-baseline"})
    assert records[0]["status"] == "ok" and records[0]["encoding"] == "json-baseline"


def test_update_link_changes_the_link_live_and_later_records_say_so(shared_bed: Testbed, tmp_path: Path) -> None:
    slow = tmp_path / "slow.toml"
    slow.write_text(SLOW_PROFILE)
    try:
        shared_bed.update_link(str(slow))
        record = shared_bed.run({"model": MODEL, "partition": "block_3_project_BN"})[0]
    finally:
        shared_bed.update_link(PROFILE)
    assert record["status"] == "ok" and record["link"]["profile"]["name"] == "test-5mbit"
    serialisation_ms = record["uplink_bytes"] * 8 / 5e3  # at 5 Mbit/s, before any header
    assert record["delivery_ms"] >= serialisation_ms + 5.0
    after = shared_bed.run({"model": MODEL, "partition": "block_3_project_BN"})[0]
    assert after["link"]["profile"]["name"] == PROFILE and after["delivery_ms"] < record["delivery_ms"] / 4


@pytest.mark.parametrize("ues", [None, 2], ids=["testbed", "cell-of-2"])
def test_a_failed_start_names_the_node_and_its_log_and_leaves_nothing(offline: None, ues: int | None) -> None:
    """A plain testbed and a cell (splitbed.cellbed), which start the same way: over TCP every UE node is started
    beside the remote before the remote fails, and none of them, nor a namespace, outlives the failure."""
    before = netns_names()
    bed = (Testbed("ideal", backend="userspace", models=["nosuchmodel"], weights=WEIGHTS, warmup=False)
           if ues is None else CellTestbed(PROFILE, ues=ues, models=["nosuchmodel"], weights=WEIGHTS, warmup=False))
    started = time.monotonic()
    with pytest.raises(TestbedError) as failure:
        bed.start()
    message = str(failure.value)
    assert "edge node" in message and "unknown model 'nosuchmodel'" in message  # the remote node's own log line
    assert time.monotonic() - started < 120
    assert bed.closed and bed.topology is not None
    prefix = bed.topology.prefix
    assert not {n for n in netns_names() - before if n.startswith(prefix)}
    nodes: list[Any] = [bed.remote, *bed.locals]
    assert len(nodes) == 1 + (ues or 1) and None not in nodes  # the overlapped start: all started before the failure
    assert not [node.side for node in nodes if psutil.pid_exists(node.popen.pid)]
    with pytest.raises(TestbedError, match="not running"):
        bed.run({"model": MODEL})


def test_the_nodes_and_the_link_run_on_the_cpus_the_plan_gives_them(shared_bed: Testbed) -> None:
    """The default plan for this host's CPUs (splitbed.runtime.cpus), applied to the real processes: the nodes
    see only their CPUs (their records' usable_cores, from their own affinity), every thread of the link
    process is pinned, and each record says where it ran."""
    import os

    from splitbed.runtime.cpus import default_plan

    plan = default_plan()
    (record,) = shared_bed.run({"model": MODEL, "partition": "block_3_project_BN", "repetitions": 1})
    cpus = record["link"]["cpus"]
    assert (cpus["ue"], cpus["edge"], cpus["link"], cpus["capture"]) == (list(plan.ue), list(plan.edge),
                                                                         list(plan.link), list(plan.capture))
    assert cpus["applied"]["capture"] == "not captured"  # a captured sweep point's records say where (test_sweep_capture)
    assert all(cpus["applied"][role].startswith("pinned to") for role in ("ue", "edge", "link")), cpus
    assert record["local_resources"]["usable_cores"] == len(plan.ue)
    assert record["remote_resources"]["usable_cores"] == len(plan.edge)
    assert shared_bed.topology is not None
    pid = shared_bed.topology.describe()["link"]["pid"]
    assert {os.sched_getaffinity(int(t)) == set(plan.link) for t in os.listdir(f"/proc/{pid}/task")} == {True}
