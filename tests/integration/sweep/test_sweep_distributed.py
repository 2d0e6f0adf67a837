"""The distributed sweep with real testbeds: a Dask LocalCluster of worker processes on this machine, each a
splitbed worker through the preload (doctor check, stale sweep, facts), measuring mobilenet_v2 on `ideal`.

- the records of a distributed sweep are those of a local sweep (point keys, repetitions, draws, sizes, weights);
- a worker killed (SIGKILL) mid-point: the point is measured again elsewhere and none of the dead worker's records
  reach the results file; its namespaces are swept;
- a resumed distributed sweep, on a new cluster, measures only the missing points;
- docs/DISTRIBUTED.md's commands (`dask scheduler`, `dask worker ... --preload`, `splitbed sweep --scheduler`)
  on loopback.

Every scheduler, nanny and worker a test starts is stopped at its end, also on failure (context managers), and the
test checks that no process of the cluster outlives it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from splitbed.sweep import SweepSpec, points, read_records, run_sweep
from splitbed.sweep.daskworker import worker_facts
from splitbed.sweep.distributed import run_distributed
from tests.integration.sweep.conftest import PROFILE, WEIGHTS, SharedBed, netns_names

pytestmark = pytest.mark.root

PARTITIONS = ("block_3_project_BN", "block_13_project_BN")
SAME_FIELDS = ("model", "partition_name", "partition_id", "encoding", "compression_profile", "image", "status",
               "raw_intermediate_bytes", "serialized_intermediate_bytes", "input_data_bytes",
               "preprocessed_input_bytes")
SAME_TAGS = ("point", "rep", "draw", "warmup", "warmup_index", "realisation")


def _spec(partitions: tuple[str, ...] = PARTITIONS, **options: Any) -> SweepSpec:
    base: dict[str, Any] = {"profiles": ("ideal",), "models": ("mobilenet_v2",), "partitions": partitions,
                            "repetitions": 2, "warmup": 1, "warmup_max": 1, "weights": WEIGHTS,
                            "backend": "userspace", "ue_devices": ("host",),
                            "baselines": ()}  # as the shared testbed
    return SweepSpec(**{**base, **options})


@contextmanager
def real_cluster(n_workers: int) -> Iterator[Any]:
    """Worker processes with the testbed resource and the splitbed preload; on exit every process it started
    is gone (checked)."""
    from distributed import Client, LocalCluster

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    try:
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, resources={"testbed": 1},
                          preload=["splitbed.sweep.daskworker"], memory_limit=0, dashboard_address=":0") as cluster, \
                Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and _running(p)]
        _, alive = psutil.wait_procs(left, timeout=15)
        alive = [p for p in alive if _running(p)]
        for process in alive:  # the test fails below; leave nothing running anyway
            with contextlib.suppress(psutil.Error):
                process.kill()
        assert not alive, f"cluster processes outlived the cluster: {[(p.pid, _cmdline(p)) for p in alive]}"


def _running(process: psutil.Process) -> bool:
    """False for an exited child not yet reaped (a zombie runs nothing) and for multiprocessing's resource
    tracker (started by the first spawned process, it lives as long as this test process, by design)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE and \
            "multiprocessing.resource_tracker" not in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:200]
    except psutil.Error:
        return "?"


def _by_point(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(record["tags"]["point"], []).append(record)
    return grouped


def _same(record: dict[str, Any]) -> tuple[Any, ...]:
    weights = record["weights"]
    return (tuple(record.get(k) for k in SAME_FIELDS), tuple(record["tags"].get(k) for k in SAME_TAGS),
            weights.get("source"), weights.get("seed"), record["predictions"][0]["class_index"])


def test_a_sweep_through_a_local_cluster_gets_the_records_of_a_local_sweep(shared_bed: Any, tmp_path: Path) -> None:
    spec = _spec()
    try:
        local = run_sweep(spec, tmp_path / "local", testbed_factory=SharedBed(shared_bed).factory)
    finally:
        shared_bed.update_link(PROFILE)
    assert not local.incomplete
    with real_cluster(1) as client:
        facts = client.run(worker_facts)
        outcome = run_distributed(spec, tmp_path / "dist", client)
    assert not outcome.incomplete and outcome.inferences == local.inferences == 2 * 2
    (fact,) = facts.values()
    assert fact["doctor"]["netns"] and fact["cpu_model"] and fact["resources"] == {"testbed": 1}
    mine, theirs = _by_point(read_records(tmp_path / "dist").records), _by_point(read_records(tmp_path / "local").records)
    assert list(mine) == list(theirs) == [p.key for p in points(spec)]
    for key, records in mine.items():
        assert [_same(r) for r in records] == [_same(r) for r in theirs[key]], key
        assert {r["tags"]["worker"]["pid"] for r in records} == {fact["pid"]}  # measured by the worker process
        assert all(r["host"]["local"]["cpu_model"] == fact["cpu_model"] for r in records)
    assert [s["worker"] for s in outcome.testbed_starts] == ["0"]  # one testbed for both points


@pytest.mark.slow
def test_a_worker_killed_mid_point_loses_nothing_to_the_results_and_the_point_is_measured_again(
        tmp_path: Path) -> None:
    spec = _spec(repetitions=3)
    killed: dict[str, Any] = {}
    with real_cluster(2) as client:
        pid_of = client.run(os.getpid)  # worker address -> its process

        def kill_mid_point(event: dict[str, Any]) -> None:  # in the client's event thread
            if not killed and event.get("status") == "ok" and not event.get("warmup"):  # a repetition is measured
                killed.update(pid=pid_of[event["worker"]], point=event["point"])
                os.kill(killed["pid"], signal.SIGKILL)

        outcome = run_distributed(spec, tmp_path, client, on_event=kill_mid_point)
    assert killed, "no repetition event came: the kill never happened"
    assert not outcome.incomplete
    records = read_records(tmp_path).records
    assert killed["pid"] not in {r["tags"]["worker"]["pid"] for r in records}  # nothing of the dead worker
    assert [r["tags"].get("rep") for r in records if r["tags"]["point"] == killed["point"]] == [None, 0, 1, 2]
    for key, mine in _by_point(records).items():
        assert [r["tags"].get("rep") for r in mine] == [None, 0, 1, 2], key  # one whole attempt per point
        assert len({r["tags"]["worker"]["pid"] for r in mine}) == 1
    assert not any(name.startswith(f"sb{killed['pid']}") for name in netns_names())  # swept


@pytest.mark.slow
def test_a_resumed_distributed_sweep_on_a_new_cluster_measures_only_the_missing_points(tmp_path: Path) -> None:
    with real_cluster(1) as client:
        run_distributed(_spec(PARTITIONS[:1]), tmp_path, client)
    first = (tmp_path / "results.jsonl").read_text()
    with real_cluster(1) as client:
        outcome = run_distributed(_spec(), tmp_path, client)
    assert outcome.skipped_points == 1 and outcome.inferences == 2 and not outcome.incomplete
    text = (tmp_path / "results.jsonl").read_text()
    assert text.startswith(first)  # the first point's records untouched
    new = [json.loads(line) for line in text[len(first):].splitlines()]
    assert [(r["tags"]["point"], r["tags"].get("rep")) for r in new] == [(points(_spec())[1].key, rep)
                                                                         for rep in (None, 0, 1)]


@contextmanager
def _started(argv: list[str], ready: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A process in its own session, up when its log shows `ready` (a regex; group 1 is returned); its whole
    process group is stopped at the end (SIGTERM, then SIGKILL), also on failure."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (match := re.search(ready, log.read_text(errors="replace"))):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        yield process, match.group(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # nothing of the group may outlive the test


def _group_alive(pgid: int) -> bool:
    return any(_running(p) for p in psutil.process_iter() if _pgid(p) == pgid)


def _pgid(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None


@pytest.mark.slow
def test_the_documented_scheduler_worker_and_sweep_commands_work_on_loopback(tmp_path: Path) -> None:
    """docs/DISTRIBUTED.md's walk-through with both machines on this one: `dask scheduler`, `dask worker` with the
    testbed resource and the preload, then `splitbed sweep --scheduler` twice (the second resumes: nothing left)."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, SPLITBED_OFFLINE="1", COLUMNS="100")
    sweep = [str(bin_dir / "splitbed"), "sweep", "-m", "mobilenet_v2", "-p", "block_3_project_BN", "--profile",
             "ideal", "--repetitions", "2", "--warmup-max", "1", "--weights", WEIGHTS, "--backend", "userspace",
             "--out", str(tmp_path / "out"), "--no-report", "--no-local-baseline", "--no-offload-baseline"]
    with _started([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                   "--dashboard-address", "127.0.0.1:0"], r"Scheduler at:\s+(tcp://\S+)", tmp_path / "s.log") \
            as (_, address), \
            _started([str(bin_dir / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "1", "--resources",
                      "testbed=1", "--preload", "splitbed.sweep.daskworker", "--memory-limit", "0", "--name",
                      "docworker"], r"(Registered to):", tmp_path / "w.log"):
        first = subprocess.run([*sweep, "--scheduler", address], env=env, capture_output=True, text=True,
                               timeout=600)
        again = subprocess.run([*sweep, "--scheduler", address], env=env, capture_output=True, text=True,
                               timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "1 points (0 already complete), 2 inferences this run" in first.stdout
    assert again.returncode == 0 and "1 points (1 already complete), 0 inferences this run" in again.stdout
    records = read_records(tmp_path / "out").records
    assert len(records) == 3 and {r["tags"]["worker"]["name"] for r in records} == {"docworker"}
    assert "Starting Worker plugin splitbed" in (tmp_path / "w.log").read_text()
