"""The real inference nodes in containers, driven by the Testbed like process nodes: a CPU- and memory-limited
UE container against an edge server (default), and container nodes giving the same results as process nodes
(slow: VGG16, whose seeded random weights give distinct scores, unlike MobileNetV2's uniform ones)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from splitbed.host import cgroup
from splitbed.runtime import NodeLimits
from splitbed.testbed import Testbed

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.timeout(1500)]  # the first test may build the image


def check_record(record: dict[str, Any], model: str, partition: str) -> None:
    """What every good record holds, whichever runtime made it."""
    assert record["status"] == "ok", record.get("error")
    assert (record["model"], record["partition_name"]) == (model, partition)
    tensors = record["tensors"]
    assert record["raw_intermediate_bytes"] == sum(t["raw_bytes"] for t in tensors) > 0
    for tensor in tensors:
        assert tensor["raw_bytes"] == math.prod(tensor["shape"]) * 4  # float32 cut tensors
    assert len(record["predictions"]) == 5
    # Containers share the host kernel, so CLOCK_MONOTONIC is shared and delivery time is direct.
    assert record["clock"]["shared_monotonic"] is True
    assert record["delivery_ms"] is not None and record["delivery_ms"] > 0


def test_limited_ue_container_against_edge_process(node_image: Any) -> None:
    """The issue's set-up: the UE in a container with --cpus 1 and a memory cap, the edge an unrestricted
    process; the whole path (preprocess, head, AIPS + TLV over TCP through the link, tail, result) works."""
    limits = NodeLimits.make(cpus=1.0, memory="2g")
    model, partition = "mobilenet_v2", "block_5_add"
    with Testbed("ideal", models=[model], weights="random:0", runtime="docker",
                 runtime_options={"sides": ["ue"]}, limits={"ue": limits}) as bed:
        records = bed.run({"model": model, "partition": partition, "repetitions": 2, "result_mode": "topk"})
        described = bed.describe()
        ue_pids = bed.local.pids()
        ue_netns = bed.topology.ns_ue
    assert len(records) == 2
    for record in records:
        check_record(record, model, partition)
    assert [r["aips_sent"] for r in records] == [True, False]  # one AIPS per session and partition
    for record in records:  # the UE's limits are in its records, read from inside its container's cgroup
        assert record["host"]["local"]["cpu_limit_cores"] == 1.0
        assert record["host"]["local"]["memory_limit_bytes"] == 2 << 30
        # the edge process runs in this test's own cgroup (no quota here; a CI runner's may have one)
        assert record["host"]["remote"]["cpu_limit_cores"] == cgroup.cpu_limit_cores()
        ue_res = record["local_resources"]
        assert ue_res["cpu_limit_cores"] == 1.0 and ue_res["cpu_throttled_ms"] is not None
        # the container node emulates the default phone, calibrated inside its limited container
        device = record["ue_device"]
        assert device["name"] == "phone-midrange" and device["mechanism"] in ("stretch", "model")
        assert device["calibration"]["host_full_model_ms"] > 0 and record["local_inference_modelled_ms"] > 0
        assert ue_res["cpu_utilisation_of_limit_pct"] == pytest.approx(ue_res["cpu_utilisation_pct"] / 1.0)
    ue, edge = described["nodes"]["ue"], described["nodes"]["edge"]
    assert ue["runtime"] == "docker" and ue["limits"]["cpus"] == 1.0 and ue["limits"]["memory_bytes"] == 2 << 30
    assert ue["namespace"] == ue_netns and edge["runtime"] == "process"
    assert described["runtime"]["container_sides"] == ["ue"] and ue_pids


@pytest.mark.slow
def test_container_nodes_match_process_nodes(node_image: Any) -> None:
    model, partition = "vgg16", "block4_pool"
    job = {"model": model, "partition": partition, "repetitions": 2, "result_mode": "topk"}
    runs = {}
    for runtime in ("process", "docker"):
        with Testbed("ideal", models=[model], weights="random:0", runtime=runtime) as bed:
            runs[runtime] = bed.run(job)
    for process_record, container_record in zip(runs["process"], runs["docker"], strict=True):
        for record in (process_record, container_record):
            check_record(record, model, partition)
        # (downlink_bytes is left out: the result message carries timings as JSON numbers, whose text length
        # varies from one inference to the next in either runtime.)
        for field in ("raw_intermediate_bytes", "serialized_intermediate_bytes", "uplink_bytes", "aips_bytes",
                      "tensors", "aips_sent", "input_data_bytes", "preprocessed_input_bytes"):
            assert container_record[field] == process_record[field], field
        expected, got = process_record["predictions"], container_record["predictions"]
        assert [p["class_index"] for p in got] == [p["class_index"] for p in expected]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], rel=1e-5)
        assert len({p["score"] for p in expected}) > 1, "uniform scores would make this comparison empty"
