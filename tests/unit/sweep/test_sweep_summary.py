"""Per-point summaries (splitbed.sweep.summary) on synthetic records: grouping by point key, only good
measurements in the statistics, exact byte counts in the CSV, best partition = lowest median e2e."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from splitbed.sweep.figures import FIGURES, LATENCY_SEGMENTS, segment_value
from splitbed.sweep.summary import best_per_group, csv_columns, summarise, write_csv


def _record(point: str, partition: str, pid: int, e2e: float, *, status: str = "ok", warmup: bool = False,
            raw: int = 12_845_056) -> dict:
    tags: dict = {"point": point}
    if warmup:
        tags["warmup"] = True
    return {"record_type": "inference", "status": status, "tags": tags, "model": "vgg16",
            "partition_name": partition, "partition_id": pid, "encoding": "tlv", "compression_profile": "none",
            "image": "builtin:chelsea", "weights": {"source": "random", "seed": 0, "warning": "RANDOM"},
            "link": {"profile": {"name": "lte", "uplink": {"rate_mbit": 46.0, "delay_ms": 16.3}},
                     "backend": "userspace"},
            "raw_intermediate_bytes": raw, "serialized_intermediate_bytes": raw + 40, "e2e_latency_ms": e2e,
            "remote_processing_ms": e2e / 4, "remote_inference_ms": e2e / 5,
            "local_resources": {"cpu_time_ms": 2.0, "energy_rapl_mj": None}}


def _records() -> list[dict]:
    out = [_record("p1", "block1_conv1", 1, v) for v in (10, 12, 11, 50, 13, 9, 14)]
    out += [_record("p1", "block1_conv1", 1, 999, warmup=True), _record("p1", "block1_conv1", 1, 5, status="error")]
    out += [_record("p2", "fc1", 20, v, raw=16_384) for v in (8, 9, 10, 11, 12, 7)]
    return out


def test_grouping_and_statistics_use_good_measurements_only() -> None:
    first, second = summarise(_records())
    assert (first.key, first.n, first.n_errors) == ("p1", 7, 1)
    e2e = first.figures["e2e_latency_ms"]
    assert e2e.median == statistics.median([10, 12, 11, 50, 13, 9, 14]) == 12
    assert (e2e.low, e2e.high) == (9, 50)  # n = 7: ranks 1 and 7 (coverage 0.984)
    assert first.profile == "lte" and first.uplink_rate_mbit == 46.0 and first.random_weights
    assert first.carriage == "tlv/none" and second.partition == "fc1"
    assert first.figures["local_energy_rapl_mj"].median is None  # null in records stays missing


def test_remote_other_segment_is_processing_minus_inference() -> None:
    record = _record("p", "x", 1, 100.0)
    assert segment_value(record, "remote_other_ms") == 5.0
    assert [key for key, _ in LATENCY_SEGMENTS][3] == "delivery_ms"


def test_the_stacked_segments_tile_the_end_to_end_latency() -> None:
    """The windows are consecutive (docs/METRICS.md): preprocess + head + encode + delivery + remote processing +
    downlink + the RESULT's wait in the local socket + result decode = e2e, up to the send/parse moments between
    them. Without the read lag the bar would fall short by it."""
    record = {"preprocess_ms": 2.0, "local_inference_ms": 10.0, "encode_ms": 1.0, "delivery_ms": 20.0,
              "remote_processing_ms": 15.0, "remote_inference_ms": 12.0, "downlink_ms": 3.0,
              "local_read_lag_ms": 4.0, "result_decode_ms": 0.5, "e2e_latency_ms": 55.5}
    assert sum(segment_value(record, key) or 0.0 for key, _ in LATENCY_SEGMENTS) == record["e2e_latency_ms"]


def test_best_partition_is_the_lowest_median_e2e_per_group() -> None:
    best = best_per_group(summarise(_records()))
    assert list(best) == [("lte", "host", "host", "vgg16", "tlv/none")]  # records without devices: host
    assert best[("lte", "host", "host", "vgg16", "tlv/none")].partition == "fc1"


def test_csv_has_every_figure_and_exact_byte_counts(tmp_path: Path) -> None:
    path = write_csv(summarise(_records()), tmp_path / "summary.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == csv_columns()  # no budgets given: no kpi columns
    assert all(f"{f.key}_median" in rows[0] for f in FIGURES)
    assert rows[0]["raw_intermediate_bytes_median"] == "12845056"
    assert rows[0]["serialized_intermediate_bytes_ci_low"] == "12845096"
    assert rows[0]["e2e_latency_ms_median"] == "12" and rows[0]["e2e_latency_ms_ci_high"] == "50"
    assert rows[1]["e2e_latency_ms_median"] == "9.5" and rows[1]["ci_coverage"] == "0.96875"
    assert rows[0]["local_energy_rapl_mj_median"] == ""


def _with_host(record: dict, stolen_ms: float, host_ms: float) -> dict:
    record["local_resources"] = {"host_cpu_stolen_ms": stolen_ms, "host_cpu_ms": host_ms, "host_cpu_wait_ms": 1.0}
    record["remote_resources"] = {"host_cpu_stolen_ms": 0.0, "host_cpu_ms": host_ms, "host_cpu_wait_ms": None}
    return record


def test_host_cpu_stolen_share_sums_both_nodes_windows_over_the_point(tmp_path: Path) -> None:
    """Ticks are coarse per window, so the point's share is total stolen / total CPU, not a mean of shares."""
    records = [_with_host(_record("p1", "a", 1, 10.0), stolen, 40.0) for stolen in (0.0, 10.0, 30.0, 0.0)]
    records.append(_with_host(_record("p1", "a", 1, 10.0, status="error"), 40.0, 40.0))  # errors do not count
    records += [_record("p2", "b", 2, 10.0)]  # records without host figures: unknown, not zero
    first, second = summarise(records)
    assert first.host_cpu_stolen_pct == 100 * 40.0 / 320.0
    assert second.host_cpu_stolen_pct is None
    rows = list(csv.DictReader(write_csv([first, second], tmp_path / "summary.csv").open()))
    assert rows[0]["host_cpu_stolen_pct"] == "12.5" and rows[1]["host_cpu_stolen_pct"] == ""


def test_sweep_names_the_points_measured_under_steal() -> None:
    from splitbed.commands.sweep import stolen_points

    quiet = summarise([_with_host(_record("q", "a", 1, 10.0), 0.0, 40.0)])
    assert stolen_points(quiet) is None
    busy = summarise([_with_host(_record(f"b{i}", f"part{i}", i, 10.0), 10.0, 40.0) for i in range(7)])
    warning = stolen_points(quiet + busy)
    assert warning is not None and warning.startswith("7 point(s)")
    assert "lte/vgg16/part0/tlv/none (12.5 %)" in warning and "and 2 more" in warning and "part5" not in warning


def test_runtimes_column_names_each_side(tmp_path: Path) -> None:
    onnx = [dict(_record("p3", "fc1", 20, v), ue_runtime={"name": "onnxruntime", "version": "1.32.0"},
                 edge_runtime={"name": "tensorflow", "version": "2.21.0"}) for v in (8, 9)]
    old, mixed = summarise([_record("p1", "fc1", 20, 10), *onnx])
    assert old.runtimes == "tensorflow/tensorflow"  # records before schema 2.4 ran on TensorFlow
    assert mixed.runtimes == "onnxruntime/tensorflow"
    with write_csv([old, mixed], tmp_path / "s.csv").open() as handle:
        assert [row["runtimes"] for row in csv.DictReader(handle)] == ["tensorflow/tensorflow", "onnxruntime/tensorflow"]
