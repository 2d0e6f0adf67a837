"""Device emulation on the real testbed: with a phone UE, the head's time for every partition follows the device
profile (full-model latency x the partition's share of the host's time), the send leaves when the phone's would
have, and a stretch that ends late says why; an edge GPU is modelled, with the end-to-end latency measured and
modelled; energy splits into compute and radio.

Against what: the expected head time is recomputed here from the profile file (not from the record's own
target) and the record's recorded timings of the host; the head time is the record's `local_inference_ms`,
from its CLOCK_MONOTONIC stamps around the head call. A stretch can only end late, when the shared host's own
compute already took longer than the phone's time (CPU steal); such records are checked for their stated cause,
and a partition where every record was late is reported rather than failed (docs/DEVICES.md)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

import pytest

from splitbed.devices import load
from splitbed.models import registry

pytestmark = pytest.mark.root

BAR = 0.10                 # the bar: emulated head within 10 % of profile latency x share
STAMP_SLACK_MS = 0.2       # the stamps bracket the head call (plan lookup, list building): a little more than it
REPETITIONS = 3
DEFAULT_PARTITIONS = ("Conv1_relu", "block_6_project_BN", "out_relu", "predictions")


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPLITBED_OFFLINE", "1")
        yield


def _bed(models: list[str], ue: str, edge: str = "host") -> Any:
    from splitbed.pytest_plugin import requires
    from splitbed.testbed import Testbed

    requires("root_or_userns", "netns")
    return Testbed("5g-mmwave-static", backend="userspace", models=models, weights="random:0", ue_device=ue,
                   edge_device=edge)


def expected_head_ms(record: dict[str, Any]) -> float:
    """Profile latency (from the profile file) x the share of the host's time the record's rounds measured."""
    device = record["ue_device"]
    share = min(max(statistics.median(device["round_shares"]), 0.0), 1.0)
    return load(device["name"]).full_model_ms(record["model"]) * share


def skip_unless_stretched(record: dict[str, Any]) -> None:
    """The phone's mechanism is decided once, at the node's calibration: modelled, there is no stretch to check."""
    device = record["ue_device"]
    if device["mechanism"] != "stretch":
        pytest.skip(f"the host computed {record['model']} slower than the phone at calibration "
                    f"({device['calibration']['host_full_model_ms']:.1f} ms against "
                    f"{device['device_full_model_ms']} ms): it was modelled, not stretched")


def check_stretched_phone(record: dict[str, Any]) -> None:
    """A record of the phone UE that ran and was stretched; skips if the phone was modelled. Run on each warm-up
    (so a modelled phone skips before the other partitions run) and on every record `check_follows` checks."""
    assert record["status"] == "ok", record["error"]
    device = record["ue_device"]
    assert device["name"] == "phone-midrange" and device["side"] == "ue"
    skip_unless_stretched(record)


def check_follows(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-record checks; returns the per-partition table (what the report shows)."""
    table: dict[str, Any] = {}
    for r in records:
        check_stretched_phone(r)
        device = r["ue_device"]
        expected = expected_head_ms(r)
        assert device["device_ms"] == pytest.approx(expected, rel=1e-3)
        head = r["local_inference_ms"]
        stamps = r["timestamps_ns"]
        assert head >= expected - 0.01  # a stretch never ends early
        # the send leaves after the phone's head time (and the encoding), never before
        assert (stamps["local_first_send"] - stamps["local_preprocessed"]) / 1e6 >= expected - 0.01
        assert r["local_inference_modelled_ms"] == device["device_ms"]
        assert r["local_inference_measured_ms"] == device["measured_ms"] <= head + 0.01
        if device["late_cause"] is None:
            assert abs(head - expected) <= BAR * expected + STAMP_SLACK_MS, (r["partition_name"], head, expected)
        else:
            assert device["late_cause"] in ("host_compute_slower_than_device", "wakeup_late")
            if device["late_cause"] == "host_compute_slower_than_device":
                assert device["measured_ms"] > expected
        row = table.setdefault((r["model"], r["partition_id"], r["partition_name"]),
                               {"expected_ms": expected, "heads": [], "on_time": [], "host_ms": []})
        row["heads"].append(head)
        row["host_ms"].append(device["measured_ms"])
        if device["late_cause"] is None:
            row["on_time"].append(head)
    on_time = sum(len(row["on_time"]) for row in table.values())
    if on_time < len(records) / 2:
        lines = [f"{k[0]} {k[2]}: expected {v['expected_ms']:.1f} ms, host compute median "
                 f"{statistics.median(v['host_ms']):.1f} ms" for k, v in table.items()]
        pytest.skip(f"only {on_time} of {len(records)} stretches were on time: the shared host computed slower "
                    "than the phone (its records say so); " + "; ".join(lines[:6]))
    for key, row in table.items():
        if row["on_time"]:
            median = statistics.median(row["on_time"])
            assert abs(median - row["expected_ms"]) <= BAR * row["expected_ms"] + STAMP_SLACK_MS, (key, row)
    return table


def run_partitions(bed: Any, model: str, partitions: list[str]) -> list[dict[str, Any]]:
    records = []
    for partition in partitions:
        (warmup,) = bed.run({"model": model, "partition": partition, "repetitions": 1,
                             "tags": {"warmup": True}})  # one-offs
        # The mechanism is decided once, at the node's calibration: a modelled phone skips at the first warm-up,
        # not after every partition has run.
        check_stretched_phone(warmup)
        records += bed.run({"model": model, "partition": partition, "repetitions": REPETITIONS})
    return records


def test_phone_head_times_follow_the_profile(offline: None) -> None:
    with _bed(["mobilenet_v2"], "phone-midrange", "edge-l4") as bed:
        records = run_partitions(bed, "mobilenet_v2", list(DEFAULT_PARTITIONS))
    table = check_follows(records)
    assert len(table) == len(DEFAULT_PARTITIONS)
    shares = [statistics.median(r["ue_device"]["round_shares"]) for r in records[::REPETITIONS]]
    assert shares[0] < shares[1] < shares[2]  # later partitions hold more of the model
    for r in records:
        # the edge GPU is faster than this host: modelled, and the end-to-end latency given both ways
        edge = r["edge_device"]
        assert edge["name"] == "edge-l4" and edge["mechanism"] == "model"
        assert r["remote_inference_modelled_ms"] == edge["device_ms"] < r["remote_inference_ms"]
        assert r["e2e_latency_modelled_ms"] == pytest.approx(
            r["e2e_latency_ms"] - r["remote_inference_ms"] + edge["device_ms"])
        assert edge["latency_derived"]["from_model"] == "resnet50"
        # energy: compute and radio, model-based, on the link's radio access (mmWave)
        energy = r["ue_energy"]
        assert energy["label"].startswith("MODEL-BASED") and energy["radio_access"] == "nr-mmwave"
        assert energy["compute_mj"] == pytest.approx(2.768 * r["ue_device"]["emulated_ms"])
        assert energy["radio_airtime_ms"] == r["delivery_ms"] and energy["radio_payload_bytes"] == r["uplink_bytes"]
        assert energy["total_mj"] == pytest.approx(energy["compute_mj"] + energy["radio_mj"])
        assert r["edge_energy"]["compute_mj"] == pytest.approx(72.0 * edge["device_ms"])
        memory = r["local_head_memory"]
        assert 0 < memory["weights_bytes"] <= 14_200_000 and memory["largest_activation_bytes"] > 0  # 3.54 M floats


def test_a_flagship_faster_than_the_host_is_modelled_not_stretched(offline: None) -> None:
    with _bed(["mobilenet_v2"], "phone-flagship") as bed:
        (record,) = bed.run({"model": "mobilenet_v2", "partition": "out_relu", "repetitions": 1})
    device = record["ue_device"]
    if device["mechanism"] != "model":
        pytest.skip(f"this host computed MobileNetV2 in {device['calibration']['host_full_model_ms']:.1f} ms, faster "
                    "than the flagship's 5.13 ms")
    assert device["emulated_ms"] is None and record["local_inference_ms"] >= device["measured_ms"] - 0.01
    assert record["local_inference_modelled_ms"] == device["device_ms"] == pytest.approx(
        5.13 * min(max(statistics.median(device["round_shares"]), 0.0), 1.0))
    assert record["e2e_latency_modelled_ms"] == pytest.approx(
        record["e2e_latency_ms"] - record["local_inference_measured_ms"] + device["device_ms"])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vgg16", "mobilenet_v2"])
def test_every_partition_follows_the_profile(offline: None, model: str) -> None:
    """The issue's done-when, for every candidate partition of VGG16 and MobileNetV2."""
    with _bed([model], "phone-midrange") as bed:
        records = run_partitions(bed, model, [p.name for p in registry.get(model).partitions])
    table = check_follows(records)
    assert len(table) == len(registry.get(model).partitions)
