"""The sweep's run loop (splitbed.sweep.loop.ProfileRun) against a scripted fake testbed, without root or nodes:
retry of failed inferences, a refused job leaves its point incomplete and the testbed up, a broken testbed is
rebuilt once per point and a second break stops the sweep, and trace-driven profiles restart the trace before
every repetition."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from netem.errors import LinkError
from netem.profile import LinkProfile
from splitbed.sweep.loop import ProfileRun, SweepError, SweepOutcome
from splitbed.sweep.plan import Point, SweepSpec, points
from splitbed.sweep.store import ResultStore
from splitbed.testbed import JobRefusedError, TestbedError

Script = Callable[["FakeBed", Mapping[str, Any]], list[dict[str, Any]]]


def _record(job: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    return {"record_type": "inference", "model": job["model"], "partition_name": job["partition"],
            "encoding": job["encoding"], "tags": dict(job["tags"]), **fields}


def ok(bed: FakeBed, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_record(job, status="ok")]


def error(bed: FakeBed, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_record(job, status="error", error={"code": "timeout"})]


class FakeBed:
    """Answers each job with the next entry of `script` for that job's partition (the last one repeats)."""

    def __init__(self, log: list[str], scripts: dict[str, list[Script]], fail_start: bool = False) -> None:
        self.log, self.scripts, self.fail_start = log, scripts, fail_start
        self.calls: dict[str, int] = {}
        self.links: list[LinkProfile] = []

    def start(self) -> FakeBed:
        self.log.append("start")
        if self.fail_start:
            raise TestbedError("the remote node did not announce itself")
        return self

    def close(self) -> None:
        self.log.append("close")

    def run(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        partition = str(job["partition"])
        n = self.calls.get(partition, 0)
        self.calls[partition] = n + 1
        script = self.scripts[partition]
        self.log.append(f"run {partition}{' warmup' if job['tags'].get('warmup') else ''}")
        return script[min(n, len(script) - 1)](self, job)

    def update_link(self, profile: LinkProfile) -> None:
        self.links.append(profile)

    def link_info(self) -> dict[str, Any]:
        return {"backend": "userspace"}


class Factory:
    """Hands out the given beds in order, recording the options each was asked for."""

    def __init__(self, *beds: FakeBed) -> None:
        self.beds = list(beds)
        self.asked: list[dict[str, Any]] = []

    def __call__(self, *, profile: str, backend: str, models: list[str], weights: str, runtime: str,
                 cpus: str, ue_device: str, edge_device: str) -> FakeBed:
        self.asked.append({"profile": profile, "backend": backend, "models": models, "weights": weights,
                           "runtime": runtime, "cpus": cpus, "ue_device": ue_device, "edge_device": edge_device})
        return self.beds.pop(0)


class Phases:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.advanced = 0

    def begin(self, total: int, done_points: int, points: int) -> None:
        pass

    def phase(self, text: str) -> None:
        self.texts.append(text)

    def advance(self, record: dict[str, Any]) -> None:
        self.advanced += 1


def _run(tmp_path: Path, spec: SweepSpec, factory: Factory,
         profile: str = "ideal") -> tuple[SweepOutcome, ResultStore, list[Point], Phases]:
    batch = [p for p in points(spec) if p.profile == profile]
    outcome = SweepOutcome(out_dir=tmp_path, points=batch)
    phases = Phases()
    with ResultStore(tmp_path) as store:  # its counts outlive the file handle
        ProfileRun(spec, profile, store, phases, outcome, factory).run(batch)
    return outcome, store, batch, phases


SPEC = SweepSpec(baselines=(), profiles=("ideal",), models=("vgg16",), partitions=("block1_pool", "block2_pool"), repetitions=3,
                 warmup=1, warmup_max=1, weights="random:0", backend="userspace")


def test_every_point_gets_its_repetitions_on_one_testbed(tmp_path: Path) -> None:
    log: list[str] = []
    factory = Factory(FakeBed(log, {"block1_pool": [ok], "block2_pool": [ok]}))
    outcome, store, batch, phases = _run(tmp_path, SPEC, factory)
    assert [store.completed(p.key) for p in batch] == [3, 3]
    assert log == ["start", "run block1_pool warmup", *["run block1_pool"] * 3,
                   "run block2_pool warmup", *["run block2_pool"] * 3, "close"]
    assert factory.asked == [{"profile": "ideal", "backend": "userspace", "models": ["vgg16"], "weights": "random:0",
                              "runtime": "process", "cpus": "auto", "ue_device": "phone-midrange",
                              "edge_device": "host"}]
    assert outcome.inferences == 6 and outcome.errors == 0 and outcome.incomplete == []
    assert [s["backend"] for s in outcome.testbed_starts] == ["userspace"]
    assert phases.advanced == 8  # 2 warm-ups + 6 good records


def test_failed_inferences_are_kept_and_retried_at_most_repetitions_extra_times(tmp_path: Path) -> None:
    log: list[str] = []
    # block1_pool: warm-up ok, then error, ok, error, ok, ok; block2_pool: only errors after its warm-up
    factory = Factory(FakeBed(log, {"block1_pool": [ok, error, ok, error, ok, ok], "block2_pool": [ok, error]}))
    outcome, store, batch, _ = _run(tmp_path, SPEC, factory)
    assert [store.completed(p.key) for p in batch] == [3, 0]
    assert log.count("run block1_pool") == 5
    assert log.count("run block2_pool") == 6  # 2 x the 3 missing repetitions, then it gives up on the point
    assert outcome.errors == 2 + 6 and outcome.inferences == 5 + 6
    assert outcome.incomplete == [batch[1].key]


def test_a_refused_job_leaves_its_point_incomplete_and_the_testbed_running(tmp_path: Path) -> None:
    def refuse(bed: FakeBed, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        raise JobRefusedError("the local node refused the job", "bad_image", "unreadable")

    log: list[str] = []
    factory = Factory(FakeBed(log, {"block1_pool": [refuse], "block2_pool": [ok]}))
    outcome, store, batch, phases = _run(tmp_path, SPEC, factory)
    assert outcome.incomplete == [batch[0].key]
    assert [store.completed(p.key) for p in batch] == [0, 3]
    assert log.count("start") == 1 and log[-1] == "close"
    assert any(text.startswith("point refused") for text in phases.texts)


def test_a_broken_testbed_is_rebuilt_once_for_the_point(tmp_path: Path) -> None:
    def die(bed: FakeBed, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        raise TestbedError("the ue node exited with status 1")

    log: list[str] = []
    first = FakeBed(log, {"block1_pool": [ok, ok, die], "block2_pool": [ok]})
    second = FakeBed(log, {"block1_pool": [ok], "block2_pool": [ok]})
    outcome, store, batch, phases = _run(tmp_path, SPEC, Factory(first, second))
    assert [store.completed(p.key) for p in batch] == [3, 3]  # the point resumed where the dead testbed left it
    assert log.count("start") == 2 and log.count("close") == 2
    assert log.index("close") < log.index("start", 1)  # the broken one is closed before the new one starts
    assert any("rebuilding" in text for text in phases.texts)
    assert outcome.incomplete == []


def test_a_second_failure_on_the_same_point_stops_the_sweep_and_keeps_the_records(tmp_path: Path) -> None:
    log: list[str] = []
    beds = [FakeBed(log, {"block1_pool": [ok]}), FakeBed(log, {"block1_pool": [ok]}, fail_start=True)]

    def die_after_one(bed: FakeBed, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        raise TestbedError("timed out waiting for job")

    beds[0].scripts["block1_pool"] = [ok, ok, die_after_one]
    with pytest.raises(SweepError, match="failed twice on point") as caught:
        _run(tmp_path, SPEC, Factory(*beds))
    assert "run the same command to resume" in str(caught.value)
    assert log.count("start") == 2 and log.count("close") == 2  # a bed whose start failed is closed too
    with ResultStore(tmp_path) as store:
        assert store.completed(points(SPEC)[0].key) == 1  # what was measured before the failure is on disk


def test_a_trace_driven_profile_restarts_the_trace_before_every_repetition(tmp_path: Path) -> None:
    trace = tmp_path / "slow-fast.tput"
    trace.write_text("# interval_ms: 3000\n5\n200\n")
    profile = tmp_path / "tr.toml"
    profile.write_text('name = "tr"\ndescription = "t"\nsource = "this test"\n[uplink]\ndelay_ms = 1.0\n'
                       f'trace = {{ path = "{trace}", kind = "throughput" }}\n[downlink]\ndelay_ms = 1.0\n')
    spec = SweepSpec(baselines=(), profiles=(str(profile),), models=("vgg16",), partitions=("block1_pool",), repetitions=3,
                     warmup=1, warmup_max=1, weights="random:0", backend="userspace")
    log: list[str] = []
    bed = FakeBed(log, {"block1_pool": [ok]})
    (tmp_path / "out").mkdir()
    _run(tmp_path / "out", spec, Factory(bed), profile=str(profile))
    starts = [link.uplink.trace.start_s for link in bed.links if link.uplink.trace is not None]
    assert starts == pytest.approx([0.0, 0.0, 2.0, 4.0])  # the warm-up and repetition 0, then k/3 of 6 s


def test_a_link_that_cannot_restart_its_trace_counts_as_a_broken_testbed(tmp_path: Path) -> None:
    trace = tmp_path / "t.tput"
    trace.write_text("# interval_ms: 1000\n5\n200\n")
    profile = tmp_path / "tr.toml"
    profile.write_text('name = "tr"\ndescription = "t"\nsource = "this test"\n[uplink]\ndelay_ms = 1.0\n'
                       f'trace = {{ path = "{trace}", kind = "throughput" }}\n[downlink]\ndelay_ms = 1.0\n')
    spec = SweepSpec(baselines=(), profiles=(str(profile),), models=("vgg16",), partitions=("block1_pool",), repetitions=2,
                     warmup=0, warmup_max=0, weights="random:0", backend="userspace")

    class StuckLink(FakeBed):
        def update_link(self, profile: LinkProfile) -> None:
            raise LinkError("the link process did not answer")

    log: list[str] = []
    (tmp_path / "out").mkdir()
    with pytest.raises(SweepError, match="the link could not change to draw 0"):
        beds = (StuckLink(log, {"block1_pool": [ok]}), StuckLink(log, {"block1_pool": [ok]}))
        _run(tmp_path / "out", spec, Factory(*beds), profile=str(profile))
    assert log.count("start") == 2 and log.count("close") == 2


def _served(seconds: float) -> Script:
    """An inference that keeps the UE busy at least `seconds` (a sleep: never shorter, however loaded the host),
    stamped on CLOCK_MONOTONIC like a node's record."""
    import time

    def run(bed: FakeBed, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        start = time.monotonic_ns()
        time.sleep(seconds)
        end = time.monotonic_ns()
        return [_record(job, status="ok", e2e_latency_ms=(end - start) / 1e6,
                        timestamps_ns={"local_start": start, "local_end": end})]
    return run


@pytest.mark.parametrize(("workload", "ran", "dropped"), [
    # a frame every 1/60 s, each taking >= 0.1 s: frames 1-4 all arrive (by 0.067 s) while frame 0 runs
    ("periodic:60/skip", [0], [1, 2, 3, 4]),
    ("periodic:60/queue:1", [0, 1], [2, 3, 4]),  # frame 1 waits for the UE; 2-4 find the queue full
])
def test_a_paced_point_drops_what_its_policy_drops_and_still_completes(tmp_path: Path, workload: str,
                                                                         ran: list[int], dropped: list[int]) -> None:
    spec = SweepSpec(baselines=(), profiles=("ideal",), models=("vgg16",), partitions=("block1_pool",),
                     repetitions=5, warmup=1, warmup_max=1, weights="random:0", backend="userspace",
                     workloads=(workload,))
    log: list[str] = []
    outcome, store, [point], phases = _run(tmp_path, spec, Factory(FakeBed(log, {"block1_pool": [_served(0.1)]})))
    assert point.key.endswith(f"|workload={workload}")
    assert store.completed(point.key) == 5 and outcome.incomplete == []  # dropped frames complete the point
    assert log.count("run block1_pool") == len(ran) == outcome.inferences and outcome.errors == 0
    assert outcome.dropped == len(dropped) and phases.advanced == 1 + 5  # the warm-up, then every frame
    from splitbed.sweep.store import read_records

    records = [r for r in read_records(tmp_path / "results.jsonl").records
               if r["record_type"] == "inference" and not r["tags"].get("warmup")]  # not the host-speed bursts
    frames = {r["workload"]["frame"]: r for r in records}
    assert sorted(frames) == [0, 1, 2, 3, 4]
    assert [k for k, r in frames.items() if r["status"] == "ok"] == ran
    assert [k for k, r in frames.items() if r["status"] == "dropped"] == dropped
    from splitbed.nodes.metrics import check_record

    for record in frames.values():
        block = record["workload"]
        assert block["spec"] == workload and block["dropped"] == (record["status"] == "dropped")
        if record["status"] == "dropped":  # the node's schema for a frame that never reached a node
            check_record(record)
        if record["status"] == "ok":  # latency from capture = wait + e2e, from the node's stamps
            assert block["clock"] == "node" and block["wait_ms"] >= 0
            assert block["frame_latency_ms"] == pytest.approx(block["wait_ms"] + record["e2e_latency_ms"])
            assert block["late"] is True  # >= 100 ms from capture against 1/60 s between frames
    if len(ran) == 2:  # the queued frame waited for frame 0 to finish
        assert frames[1]["workload"]["queued"] and frames[1]["workload"]["wait_ms"] >= 100 - 1000 / 60 - 1
