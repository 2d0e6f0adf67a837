"""A real sweep (conftest.shared_sweep) and its files: every record on disk with its point key and link, the CSV
summary equal to statistics recomputed from the JSONL, resume skipping complete points and redoing only what an
interruption lost, and the CLI's dry run and summary over the same directory."""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from splitbed.cli import app
from splitbed.linkmodel import wire_bytes
from splitbed.nodes.metrics import check_record
from splitbed.sweep import points, read_records, run_sweep, summarise, write_csv
from splitbed.sweep.store import is_measurement
from splitbed.testbed import EDGE_PORT
from tests.integration.sweep.conftest import (
    PROFILE,
    SWEEP_PARTITIONS,
    WEIGHTS,
    SharedBed,
    slow_fast_trace_profile,
    sweep_spec,
)

pytestmark = pytest.mark.root


def _measured(directory: Path) -> list[dict]:
    return [r for r in read_records(directory).records if is_measurement(r)]


def test_every_inference_is_a_valid_record_with_its_point_key_and_link(shared_sweep: Path) -> None:
    records = read_records(shared_sweep).records
    keys = {p.key for p in points(sweep_spec())}
    assert len(keys) == 4
    good = Counter(r["tags"]["point"] for r in records if is_measurement(r) and r["status"] == "ok")
    warm = Counter(r["tags"]["point"] for r in records if not is_measurement(r))
    assert good == {k: 6 for k in keys} and warm == {k: 1 for k in keys}
    for record in records:
        check_record(record)
        assert record["link"]["profile"]["name"] == PROFILE and record["link"]["backend"] == "userspace"
        assert record["partition_name"] in SWEEP_PARTITIONS and record["weights"]["source"] == "random"
        assert record["tags"]["point"].startswith(f"{PROFILE}|mobilenet_v2|{record['partition_name']}|"
                                                  f"{record['encoding']}|")


def test_the_shared_tcp_testbed_started_both_nodes_at_once_on_the_fixed_port(shared_bed: Any) -> None:
    """Over TCP the local node is given the edge's fixed port before the remote is ready, so both load their
    models at once (a QUIC remote announces an ephemeral port: tests/e2e/test_e2e_transport.py): the local node
    had been launched before the remote's ready line came (an order of two stamps, no duration)."""
    assert shared_bed.transport == "tcp" and shared_bed.remote_port == EDGE_PORT
    stamps = shared_bed.start_stamps
    assert stamps["local_launched"] < stamps["remote_ready"], stamps


def test_summary_csv_equals_statistics_recomputed_from_the_jsonl(shared_sweep: Path) -> None:
    path = write_csv(summarise(read_records(shared_sweep).records), shared_sweep / "summary.csv")
    with path.open() as handle:
        rows = {(r["partition"], r["encoding"]): r for r in csv.DictReader(handle)}
    assert len(rows) == 4
    for (partition, encoding), row in rows.items():
        mine = [r for r in _measured(shared_sweep) if r["partition_name"] == partition and r["encoding"] == encoding
                and r["status"] == "ok"]
        e2e = [r["e2e_latency_ms"] for r in mine]
        assert int(row["n"]) == len(e2e) == 6
        assert float(row["e2e_latency_ms_median"]) == pytest.approx(statistics.median(e2e), rel=1e-9)
        assert float(row["e2e_latency_ms_ci_low"]) == min(e2e) and float(row["e2e_latency_ms_ci_high"]) == max(e2e)
        assert int(row["raw_intermediate_bytes_median"]) == mine[0]["raw_intermediate_bytes"]
        assert float(row["uplink_rate_mbit"]) == 150.564 and row["weights"] == WEIGHTS
        assert float(row["ci_coverage"]) == pytest.approx(1 - 2 / 64)
    assert int(rows[("block_3_project_BN", "json-baseline")]["serialized_intermediate_bytes_median"]) > \
        3 * int(rows[("block_3_project_BN", "tlv")]["serialized_intermediate_bytes_median"])


def test_the_host_speed_reference_ran_pinned_between_the_inferences_and_fills_its_columns(shared_sweep: Path) -> None:
    """The sweep ran the host-speed reference (splitbed.sweep.hostspeed, on by default) on the CPU plan's UE and edge
    CPUs right before each measured inference, after the previous one ended, and summary.csv has its figures."""
    from splitbed.runtime.cpus import default_plan

    plan = default_plan()
    measured = _measured(shared_sweep)
    for point in {r["tags"]["point"] for r in measured}:
        mine = [r for r in measured if r["tags"]["point"] == point]
        previous_end = 0
        for record in mine:
            stamps = record["timestamps_ns"]
            for role, cpus in (("edge", plan.edge), ("ue", plan.ue)):
                run = record["host_speed"][role]
                assert run["cpus"] == list(cpus)  # what the child read of its own affinity
                assert previous_end <= run["start_ns"] < run["end_ns"] <= stamps["local_start"]
            previous_end = max(stamps["local_end"], stamps["local_start"])
    path = write_csv(summarise(read_records(shared_sweep).records), shared_sweep / "summary.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        assert int(row["host_speed_n"]) == 6
        for column in ("host_speed_edge_cv_pct", "host_speed_ue_cv_pct", "host_speed_edge_ms", "host_speed_ue_ms"):
            value = float(row[column])
            assert math.isfinite(value) and value > 0, (column, row[column])


def test_a_finished_sweep_resumes_without_redoing_anything(shared_sweep: Path, shared_bed: object) -> None:
    before = (shared_sweep / "results.jsonl").read_bytes()
    bed = SharedBed(shared_bed)
    outcome = run_sweep(sweep_spec(), shared_sweep, testbed_factory=bed.factory)
    assert (outcome.skipped_points, outcome.inferences, bed.starts) == (4, 0, 0)
    assert (shared_sweep / "results.jsonl").read_bytes() == before


def test_an_interrupted_sweep_redoes_only_the_lost_repetitions(shared_sweep: Path, shared_bed: object,
                                                              tmp_path: Path) -> None:
    copy = tmp_path / "interrupted"
    shutil.copytree(shared_sweep, copy, ignore=shutil.ignore_patterns("report"))
    lines = (copy / "results.jsonl").read_bytes().splitlines(keepends=True)
    # An interruption during the last point: its last two records are gone and a third was half written.
    (copy / "results.jsonl").write_bytes(b"".join(lines[:-3]) + lines[-3][:50])
    lost_point = read_records(shared_sweep).records[-1]["tags"]["point"]
    bed = SharedBed(shared_bed)
    outcome = run_sweep(sweep_spec(), copy, testbed_factory=bed.factory)
    assert outcome.skipped_points == 3 and bed.starts == 1
    assert outcome.inferences - outcome.errors == 3  # exactly the lost ones
    counts = Counter(r["tags"]["point"] for r in _measured(copy) if r["status"] == "ok")
    assert set(counts.values()) == {6} and len(counts) == 4
    assert (copy / "results.jsonl.torn").read_bytes() == lines[-3][:50] + b"\n"
    new = [r for r in _measured(copy) if r["tags"]["point"] == lost_point][-3:]
    assert all(r["status"] == "ok" for r in new)


def test_cli_dry_run_sees_the_finished_points(shared_sweep: Path) -> None:
    args = ["sweep", "--dry-run", "--out", str(shared_sweep), "--model", "mobilenet_v2", "--profile", PROFILE,
            "--encoding", "tlv", "--encoding", "json-baseline", "--repetitions", "6", "--weights", WEIGHTS,
            "--backend", "userspace", "--ue-device", "host", "--no-local-baseline",
            "--no-offload-baseline"]
    for partition in SWEEP_PARTITIONS:
        args += ["--partition", partition]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4 points, 4 complete, 0 to measure" in result.output



def test_a_refused_point_is_left_incomplete_and_the_sweep_goes_on(shared_bed: object, tmp_path: Path) -> None:
    # A missing or non-image file is refused by the spec itself, before any testbed: a JPEG cut after its header
    # passes that check and fails only when the local node decodes it.
    from splitbed.nodes.images import resolve_image

    broken = tmp_path / "truncated.jpg"
    broken.write_bytes(resolve_image("builtin:chelsea").read_bytes()[:5000])
    spec = sweep_spec(image=str(broken), encodings=("tlv",))
    bed = SharedBed(shared_bed)
    outcome = run_sweep(spec, tmp_path / "out", testbed_factory=bed.factory)
    assert sorted(outcome.incomplete) == sorted(p.key for p in points(spec)) and bed.starts == 1
    assert read_records(tmp_path / "out").records == []
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"][-1]["state"] == "incomplete"
    assert shared_bed.run({"model": "mobilenet_v2", "partition": "out_relu"})[0]["status"] == "ok"  # type: ignore[attr-defined]


def test_a_testbed_that_cannot_start_stops_the_sweep_with_its_reason(offline: None, tmp_path: Path) -> None:
    from splitbed.sweep import SweepError
    from splitbed.testbed import Testbed

    starts = []

    def broken_remote(**kwargs: object) -> Testbed:  # a real testbed whose remote node rejects its options
        starts.append(kwargs["profile"])
        return Testbed(**kwargs, remote_args=["--no-such-option"])  # type: ignore[arg-type]

    with pytest.raises(SweepError, match="(?s)failed twice.*no such option: --no-such-option"):
        run_sweep(sweep_spec(encodings=("tlv",), partitions=("out_relu",)), tmp_path, testbed_factory=broken_remote)
    assert starts == [PROFILE, PROFILE]
    assert json.loads((tmp_path / "sweep.json").read_text())["runs"][-1]["state"] == "failed"


def test_a_trace_driven_sweep_places_each_repetition_along_the_trace(shared_bed: Any, tmp_path: Path) -> None:
    """On a link following a capacity trace, repetition k of n starts the trace k/n of its period in, for every
    point alike (splitbed.trace_phases). Trace: 5 Mbit/s for 3 s, then 200 Mbit/s for 3 s; 2 repetitions:
    the first (and its warm-up) meets 5 Mbit/s, the second 200 Mbit/s, and each record says where it started."""
    link = slow_fast_trace_profile(tmp_path, "slow-fast", 5.0)
    spec = sweep_spec(profiles=(str(link),), partitions=("block_1_project_BN",), encodings=("tlv",),
                      repetitions=2, warmup=1)
    try:
        outcome = run_sweep(spec, tmp_path / "out", testbed_factory=SharedBed(shared_bed).factory)
    finally:
        shared_bed.update_link(PROFILE)
    assert outcome.inferences - outcome.errors == 2 and not outcome.incomplete, outcome
    records = read_records(tmp_path / "out").records
    starts = [(is_measurement(r), r["link"]["profile"]["uplink"]["trace"].get("start_s", 0.0)) for r in records]
    assert starts == [(False, 0.0), (True, 0.0), (True, 3.0)]
    slow, fast = [r for r in records if is_measurement(r)]
    at_5_mbit_ms = wire_bytes(slow["uplink_bytes"]) * 8 / 5e3  # the serialisation alone, a hard lower bound
    print(f"uplink {slow['uplink_bytes']} bytes: delivery {slow['delivery_ms']:.1f} ms at 5 Mbit/s "
          f"(>= {at_5_mbit_ms:.1f}), {fast['delivery_ms']:.1f} ms at 200 Mbit/s")
    assert slow["delivery_ms"] >= at_5_mbit_ms
    assert fast["delivery_ms"] < at_5_mbit_ms / 5


def test_repetitions_on_a_lossy_link_each_draw_their_own_seeds_and_a_rerun_draws_the_same(
        shared_bed: Any, tmp_path: Path) -> None:
    """On a link with random loss and jitter every repetition runs on its own draw (seeds derived from the
    profile's seed, the point key and the draw: netem.seeds), applied live to the real link before it; running
    the same sweep again gives every record the same seeds, bit for bit. (That distinct seeds make the real
    link lose distinct packets is measured in tests/integration/netem/test_link_reseed.py.)"""
    from netem.seeds import derive_seed

    link = tmp_path / "lossy.toml"
    link.write_text('name = "lossy-sweep"\ndescription = "d"\nsource = "this test"\nseed = 11\n'
                    '[uplink]\nrate_mbit = 100.0\ndelay_ms = 1.0\njitter_ms = 0.2\n'
                    'loss = { model = "random", p = 0.01 }\n[downlink]\ndelay_ms = 1.0\n')
    spec = sweep_spec(profiles=(str(link),), partitions=("block_13_project_BN",), encodings=("tlv",),
                      repetitions=3, warmup=1)
    runs = []
    try:
        for name in ("first", "again"):
            outcome = run_sweep(spec, tmp_path / name, testbed_factory=SharedBed(shared_bed).factory)
            assert outcome.inferences - outcome.errors == 3 and not outcome.incomplete, outcome
            runs.append(read_records(tmp_path / name).records)
    finally:
        shared_bed.update_link(PROFILE)
    seeds = [[(r["tags"]["draw"], r["link"]["profile"]["uplink"]["seed"], r["link"]["profile"]["downlink"]["seed"])
              for r in records if is_measurement(r)] for records in runs]
    assert seeds[0] == seeds[1]
    key = runs[0][0]["tags"]["point"]
    assert seeds[0] == [(k, derive_seed(11, key, k, "link.uplink"), derive_seed(12, key, k, "link.downlink"))
                        for k in range(3)]
    assert summarise(runs[0])[0].independent_draws == 3
