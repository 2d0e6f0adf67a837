"""The two nodes end to end over loopback TCP: real `splitbed local-node` processes driven by JSON-line jobs
against a real remote node process, and the in-process LocalNode API. Every record is checked against the
schema, against itself (sizes and times that must add up) and against what the remote saw (AIPS events,
CRC-32 of the delivered tensors)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nodes_harness import MODEL, WEIGHTS, RecordingProxy, RemoteProcess

from splitbed import envlock
from splitbed.nodes.metrics import check_record

LINK = {"profile": "loopback", "backend": "none", "note": "test: plain loopback TCP"}


def _jobs_a() -> list[dict[str, Any]]:
    return [
        {"job_id": "raw", "partition": 3, "compression": "none", "repetitions": 2, "tags": {"case": "raw"}},
        {"job_id": "zstd", "partition": 3, "compression": "zstd"},
        {"job_id": "int8", "partition": "block_3_project_BN", "compression": "int8"},
        {"job_id": "reset", "action": "reset-decoder"},
        {"job_id": "after-reset", "partition": 5, "compression": "int8"},
        {"job_id": "same-id", "partition": 5, "compression": "int8", "aips": "resend-same-id"},
        {"job_id": "new-id", "partition": 5, "compression": "int8", "aips": "resend-new-id"},
        {"job_id": "omit-ok", "partition": 5, "compression": "int8", "aips": "omit"},
        {"job_id": "two-tensors", "partition": "block_2_expand_relu", "compression": "lz4"},
        {"job_id": "json", "partition": 5, "encoding": "json-baseline", "result_mode": "full"},  # a new session anyway
        {"job_id": "bad", "partition": 99},
    ]


def _jobs_b() -> list[dict[str, Any]]:
    return [{"job_id": "b", "partition": 1, "compression": "shuffle-zstd", "repetitions": 3,
             "result_mode": "topk", "top_k": 3}]


def _run_local_nodes(remote: RemoteProcess, tmp_path: Path, proxy: RecordingProxy) -> list[list[dict[str, Any]]]:
    """Two local-node processes at once, each with its own job list; their stdout JSON lines. The second one
    goes through `proxy`, which records its uplink byte stream."""
    procs = []
    for name, jobs, port in (("a", _jobs_a(), remote.port), ("b", _jobs_b(), proxy.port)):
        jobs_file = tmp_path / f"jobs-{name}.jsonl"
        jobs_file.write_text("".join(json.dumps(j) + "\n" for j in jobs))
        argv = [sys.executable, "-m", "splitbed", "local-node", "--connect", f"{remote.host}:{port}",
                "--weights", WEIGHTS, "--jobs", str(jobs_file), "--verify-delivery", "--link-info", json.dumps(LINK)]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            outputs.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    # Job list a has one bad job: exit 1; b is clean: exit 0.
    assert [code for code, _, _ in outputs] == [1, 0], [err.decode()[-2000:] for _, _, err in outputs]
    return [[json.loads(line) for line in out.decode().splitlines()] for _, out, _ in outputs]


@pytest.fixture(scope="module")
def proxy(remote: RemoteProcess) -> Iterator[RecordingProxy]:
    relay = RecordingProxy((remote.host, remote.port))
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture(scope="module")
def driven(remote: RemoteProcess, proxy: RecordingProxy,
           tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, Any]]]:
    return _run_local_nodes(remote, tmp_path_factory.mktemp("local"), proxy)


def _by_job(lines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if line["record_type"] != "job_done":
            out.setdefault(line["job_id"], []).append(line)
    return out


def _check_consistent(rec: dict[str, Any]) -> None:
    """What must hold in every successful record, whatever the link and machine."""
    check_record(rec)
    assert rec["status"] == "ok" and rec["error"] is None
    assert rec["raw_intermediate_bytes"] == sum(t["raw_bytes"] for t in rec["tensors"])
    for t in rec["tensors"]:
        assert t["raw_bytes"] == math.prod(t["shape"]) * 4  # float32 head outputs
    assert rec["uplink_bytes"] == rec["aips_bytes"] + rec["serialized_intermediate_bytes"]
    assert rec["aips_sent"] == (rec["aips_bytes"] > 0)
    assert rec["compression_ratio"] == pytest.approx(rec["raw_intermediate_bytes"]
                                                     / rec["serialized_intermediate_bytes"])
    assert rec["preprocessed_input_bytes"] == math.prod(rec["input_shape"]) * 4
    assert rec["input_data_bytes"] > 0
    # times: each a part of the one after it
    assert 0 < rec["delivery_ms"] <= rec["round_trip_ms"] <= rec["e2e_latency_ms"]
    # the transfers end at the kernels' receive stamps; the nodes' reads come at or after them. The RESULT keeps
    # its stamp unless the RESULT_REST of the split RESULT, or the CHECKSUM (--verify-delivery), was already behind
    # it when the node read: then the stamp is the later unit's arrival. A RESULT_REST that ended the read bounds
    # the leading unit's arrival from above, and the downlink ends at that bound (kernel_rx_bound); with the
    # CHECKSUM behind, the record ends the downlink at the read instead (docs/METRICS.md)
    # (and a transfer during a wall-clock step keeps no stamp either: docs/METRICS.md, "Receive stamps")
    assert rec["delivery_end"] in ("kernel_rx", "app_read")
    assert rec["downlink_end"] in ("kernel_rx", "kernel_rx_bound", "app_read")
    local_lag, remote_lag = rec["local_read_lag_ms"], rec["remote_read_lag_ms"]
    assert (local_lag is None) == (rec["downlink_end"] == "app_read")
    assert (remote_lag is None) == (rec["delivery_end"] == "app_read")
    # every read-based end says why; on this machine (stamps on, Linux >= 5.4, loopback) only a wall-clock
    # step, packets out of order, or (downlink) the RESULT_REST or CHECKSUM in the same read can cause one
    assert (rec["delivery_end_reason"] is None) == (rec["delivery_end"] == "kernel_rx")
    assert (rec["downlink_end_reason"] is None) == (rec["downlink_end"] == "kernel_rx")
    assert rec["delivery_end_reason"] in (None, "clock_step", "stamp_after_read", "out_of_order")
    assert rec["downlink_end_reason"] in (None, "clock_step", "stamp_after_read", "out_of_order", "read_continued",
                                          "bounded_by_rest")
    bounded = rec["downlink_end"] == "kernel_rx_bound"
    assert bounded == (rec["downlink_end_reason"] == "bounded_by_rest") == (rec["downlink_rest_gap_ms"] is not None)
    assert (remote_lag is None or remote_lag >= 0) and (local_lag is None or local_lag >= 0)
    assert rec["delivery_ms"] + (remote_lag or 0.0) == pytest.approx(rec["delivery_read_ms"], abs=1e-6)
    # the RESULT came split (both nodes know it: docs/PROTOCOL.md 3.6): the remote read its meter's counters after
    # sending the leading unit, the local node's at once (no timing asserted: a stall may come between any two)
    assert rec["result_rest_bytes"] > 0 and rec["remote_resources"]["counters_late_ms"] > 0
    assert rec["local_resources"]["counters_late_ms"] >= 0
    assert rec["delivery_ms"] + rec["remote_processing_ms"] + rec["downlink_ms"] + (local_lag or 0.0) \
        == pytest.approx(rec["round_trip_ms"], abs=1e-6)
    assert rec["send_ms"] <= rec["round_trip_ms"]
    assert rec["remote_inference_ms"] <= rec["remote_processing_ms"] <= rec["round_trip_ms"]
    assert rec["downlink_ms"] >= 0
    assert rec["total_inference_ms"] == pytest.approx(rec["local_inference_ms"] + rec["remote_inference_ms"])
    assert rec["e2e_latency_ms"] >= rec["preprocess_ms"] + rec["local_inference_ms"] + rec["encode_ms"]
    assert rec["remote_tail_build_ms"] == 0  # PREPARE built the tail before any measured window
    stamps = rec["timestamps_ns"]
    if remote_lag is not None:
        assert stamps["local_first_send"] < stamps["remote_last_byte_kernel"] <= stamps["remote_last_byte"]
    if local_lag is not None:
        assert stamps["remote_result_send"] < stamps["local_result_received_kernel"] <= stamps["local_result_received"]
    assert stamps["remote_result_send"] <= stamps["remote_result_rest_send"]  # the RESULT_REST goes after the lead
    if bounded:  # the bound is the RESULT_REST's arrival: after its send, the gap between the two sends recorded
        assert stamps["remote_result_rest_send"] < stamps["local_result_received_kernel"]
        assert rec["downlink_rest_gap_ms"] == pytest.approx(
            (stamps["remote_result_rest_send"] - stamps["remote_result_send"]) / 1e6, abs=1e-9)
    assert stamps["local_start"] < stamps["local_first_send"] <= stamps["remote_first_byte"] \
        <= stamps["remote_last_byte"] <= stamps["remote_tail_start"] < stamps["remote_tail_end"] \
        <= stamps["remote_result_send"] <= stamps["local_result_received"] <= stamps["local_end"]
    # clock: one host
    assert rec["clock"]["shared_monotonic"] and rec["clock"]["method"] == "same-host"
    assert rec["delivery_uncertainty_ms"] == 0
    # resources on both sides
    for side in ("local_resources", "remote_resources"):
        res = rec[side]
        assert res["cpu_time_ms"] > 0 and res["wall_ms"] > 0 and res["peak_rss_bytes"] > 100 << 20
        assert res["energy_estimate_mj"] == pytest.approx(res["cpu_time_ms"] * 4.4)
        if res["energy_rapl_mj"] is None:
            assert res["energy_rapl_reason"]
    assert rec["local_gpu"]["count"] == 0 and rec["local_gpu"]["reason"]
    assert rec["weights"]["source"] == "random" and rec["weights"]["seed"] == 0
    assert rec["remote_weights"] == rec["weights"]
    assert rec["link"] == LINK
    assert rec["versions"]["local"]["tensorflow"] and rec["versions"]["remote"]["format_version"]
    # both nodes say whether their software is the lock's (same checkout and venv here: the same answer)
    lock = envlock.status()
    assert {k: rec["versions"][side][k] for side in ("local", "remote") for k in lock} == lock and lock["lock_sha256"]
    assert rec["host"]["remote"]["cpu_count"] >= 1
    # both senders' TCP state, read off their sockets before the transfer (a connected socket always has one)
    for side in ("uplink_tcp", "downlink_tcp"):
        tcp = rec[side]
        assert tcp["cwnd_segments"] >= 1 and tcp["mss_bytes"] > 0 and tcp["rto_ms"] >= 200, tcp
        assert tcp["congestion_control"] and tcp["ca_state"] in ("open", "disorder", "cwr", "recovery", "loss")
        assert tcp["unacked_segments"] == 0, tcp  # every earlier byte was acknowledged before the next reply
    # topk is the default; the json job asks for all 1000 scores (full), job b for the best 3
    assert rec["result_mode"] == ("full" if rec["job_id"] == "json" else "topk")
    assert len(rec["predictions"]) == (3 if rec["job_id"] == "b" else 5)
    check = rec["delivery_check"]
    assert check["match"] == check["expected_match"], check


def test_driven_local_nodes(driven: list[list[dict[str, Any]]]) -> None:
    a, b = (_by_job(lines) for lines in driven)
    records = [r for jobs in (a, b) for recs in jobs.values() for r in recs if r["record_type"] == "inference"]
    assert len(records) == 13
    for rec in records:
        if rec["status"] == "ok":
            _check_consistent(rec)
    ends = [r["downlink_end"] for r in records if r["status"] == "ok"]
    reasons = [r["downlink_end_reason"] for r in records if r["status"] == "ok" and r["downlink_end_reason"]]
    print(f"downlink ends: {ends.count('kernel_rx')} at the RESULT's kernel stamp, {ends.count('kernel_rx_bound')} "
          f"at its RESULT_REST's, {ends.count('app_read')} at the read "
          f"({', '.join(f'{reasons.count(r)} {r}' for r in sorted(set(reasons))) or 'none'})")
    assert "kernel_rx" in ends  # the downlink keeps its stamp in most records (8-13 of 13 per run when measured)
    assert any(r["delivery_end"] == "kernel_rx" for r in records if r["status"] == "ok")

    raw1, raw2 = a["raw"]
    assert raw1["tags"] == {"case": "raw"} and raw1["model"] == MODEL and raw1["partition_name"] == "block_1_project_BN"
    assert (raw1["aips_sent"], raw1["aips_reason"], raw1["aips_id"]) == (True, "first_data", 1)
    assert [e["event"] for e in raw1["aips_events"]] == ["activated"]
    assert (raw2["aips_sent"], raw2["aips_reason"], raw2["aips_events"]) == (False, "reused", [])
    assert raw1["session_id"] == raw2["session_id"] and raw2["session_inference_index"] == 1
    # raw profile: the data unit is the tensor plus the unit header and tensor table only
    assert 0 < raw1["serialized_intermediate_bytes"] - raw1["raw_intermediate_bytes"] < 64
    assert raw1["delivery_check"]["match"] is True

    (zstd,) = a["zstd"]
    assert (zstd["aips_reason"], zstd["compression_profile"]) == ("compression_changed", "zstd")
    assert [(e["event"], e.get("reason")) for e in zstd["aips_events"]] == [("ended", "new_aips_other_id"),
                                                                             ("activated", None)]
    (int8,) = a["int8"]
    assert int8["aips_reason"] == "partition_changed" and int8["partition_id"] == 5
    assert int8["aips_events"][0] == {**int8["aips_events"][0], "event": "ended", "reason": "shape_changed"}
    assert int8["delivery_check"]["match"] is False and int8["delivery_check"]["expected_match"] is False
    assert int8["serialized_intermediate_bytes"] < int8["raw_intermediate_bytes"] / 3.5  # 1 byte per float32

    (reset,) = a["reset"]
    assert reset["record_type"] == "action" and reset["session_id"] == raw1["session_id"]
    assert [(e["event"], e["reason"]) for e in reset["aips_events"]] == [("ended", "reset")]
    (after,) = a["after-reset"]
    assert (after["aips_sent"], after["aips_reason"]) == (True, "after_decoder_reset")
    (same,) = a["same-id"]
    assert same["aips_id"] == after["aips_id"] and same["aips_reason"] == "forced_same_id"
    assert [(e["event"], e.get("reason")) for e in same["aips_events"]] == [("ended", "new_aips_same_id"),
                                                                             ("activated", None)]
    (new,) = a["new-id"]
    assert new["aips_id"] != same["aips_id"]
    assert [e.get("reason") for e in new["aips_events"]] == ["new_aips_other_id", None]
    (omit,) = a["omit-ok"]  # an AIPS is active, so omitting it is simply reuse by another name
    assert omit["status"] == "ok" and not omit["aips_sent"] and omit["aips_reason"] == "omitted_on_request"

    (two,) = a["two-tensors"]  # inside a residual block: the shortcut crosses too
    assert len(two["tensors"]) == 2 and two["aips_reason"] == "partition_changed"
    assert [(e["event"], e.get("reason")) for e in two["aips_events"]] == [("ended", "tensor_count_changed"),
                                                                            ("activated", None)]
    assert two["aips_events"][1]["num_tensors"] == 2 and two["delivery_check"]["match"]

    (jsonb,) = a["json"]
    assert jsonb["encoding"] == "json-baseline" and jsonb["session_id"] != raw1["session_id"]
    assert jsonb["aips_bytes"] == 0 and jsonb["compression_profile"] is None
    assert jsonb["serialized_intermediate_bytes"] > 2 * jsonb["raw_intermediate_bytes"]  # text is bigger
    assert jsonb["delivery_check"]["match"] is True

    (bad,) = a["bad"]
    assert bad["record_type"] == "job_error" and "no candidate partition 99" in bad["error"]["message"]

    b_records = b["b"]
    assert len(b_records) == 3 and all(r["result_mode"] == "topk" for r in b_records)
    assert all(r["compression_profile"] == "shuffle-zstd" for r in b_records)
    assert b_records[0]["session_id"] not in {r["session_id"] for recs in a.values() for r in recs
                                               if "session_id" in r}
    # the full-mode result carries all 1000 scores like the testbed contribution (~24 kB); top-k only a few
    assert jsonb["downlink_bytes"] > 20_000 > 5 * max(raw1["downlink_bytes"], b_records[0]["downlink_bytes"])


def test_job_done_lines(driven: list[list[dict[str, Any]]]) -> None:
    done = [line for line in driven[0] if line["record_type"] == "job_done"]
    assert [d["job_id"] for d in done] == [j["job_id"] for j in _jobs_a()]
    assert {d["job_id"]: d["records"] for d in done}["raw"] == 2
    assert {d["job_id"]: d["errors"] for d in done}["bad"] == 1


def test_uplink_stream_decodes_with_the_format_decoder_alone(driven: list[list[dict[str, Any]]],
                                                             proxy: RecordingProxy) -> None:
    """The recorded uplink of local node b, from its first byte, through splitbed.format.Decoder and nothing
    else: control units are skipped as unknown units, and the AIPS and data units match b's records."""
    from splitbed.format import AipsActivated, Decoder, FormatErrorEvent, TensorsDecoded, UnknownUnit
    from splitbed.nodes.protocol import MsgType

    proxy.close()
    records = [r for r in driven[1] if r["record_type"] == "inference"]
    decoder = Decoder()
    decoder.feed(bytes(proxy.uplink))
    events = decoder.events()
    assert not [e for e in events if isinstance(e, FormatErrorEvent)]
    unknown = [e.unit_type for e in events if isinstance(e, UnknownUnit)]
    assert unknown == [MsgType.HELLO] + [MsgType.CLOCK_PING] * 8 + [MsgType.SELECT, MsgType.PREPARE]
    activated = [e for e in events if isinstance(e, AipsActivated)]
    decoded = [e for e in events if isinstance(e, TensorsDecoded)]
    assert len(activated) == 1 and activated[0].unit_size == records[0]["aips_bytes"]
    assert activated[0].aips.partition_id == records[0]["partition_id"]
    assert [d.unit_size for d in decoded] == [r["serialized_intermediate_bytes"] for r in records]
    for d, rec in zip(decoded, records, strict=True):
        assert [list(t.shape) for t in d.tensors] == [t["shape"] for t in rec["tensors"]]
        assert list(d.payload_sizes) == [t["serialized_bytes"] for t in rec["tensors"]]
    assert sum(r["uplink_bytes"] for r in records) == sum(d.unit_size for d in decoded) + activated[0].unit_size
