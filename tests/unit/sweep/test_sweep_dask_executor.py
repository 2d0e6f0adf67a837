"""The distributed sweep's client and worker (splitbed.sweep.distributed, .daskworker, .pointwire) on a real
Dask LocalCluster in this process, with a testbed stand-in (tests/unit/sweep/fakebed.py): what reaches the
results file, resume, the worker's testbed kept between points, a broken testbed stopping the sweep, and the
checks on what crosses between client and worker. The real testbed in worker processes, a killed worker and the
overhead: tests/integration/sweep/test_sweep_distributed.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from splitbed.sweep import SweepError, SweepSpec, points, read_records
from splitbed.sweep.distributed import DistributedError, check_address, list_testbed_workers, run_distributed
from splitbed.sweep.plan import SweepSpecError
from splitbed.sweep.pointwire import (
    PointRequest,
    PointResult,
    WireError,
    parse_request,
    parse_result,
    request_text,
    result_text,
)
from tests.unit.sweep.fakebed import FakeBed

PARTITIONS = ("block_3_project_BN", "block_13_project_BN", "out_relu")


def _spec(partitions: tuple[str, ...] = PARTITIONS[:2], **options: Any) -> SweepSpec:
    base: dict[str, Any] = {"profiles": ("ideal",), "models": ("mobilenet_v2",), "partitions": partitions,
                            "repetitions": 3, "warmup": 1, "warmup_max": 1, "weights": "random:0",
                            "backend": "userspace", "baselines": ()}
    return SweepSpec(**{**base, **options})


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One in-process cluster (threads) with two testbed workers running the fake testbed; stopped at the end,
    also on failure (context managers)."""
    from distributed import Client, LocalCluster

    from splitbed.sweep.daskworker import SplitbedWorker

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, resources={"testbed": 1},
                      dashboard_address=":0") as cluster, Client(cluster, set_as_default=False) as client:
        client.register_plugin(SplitbedWorker(check=False, factory=FakeBed, steal_window_s=0.01, idle_close_s=0))
        yield client


@pytest.fixture(autouse=True)
def fresh_log() -> Iterator[None]:
    FakeBed.reset()
    yield
    FakeBed.reset()


def _runs(partition: str | None = None) -> list[dict[str, Any]]:
    return [tags for what, (p, tags) in ((w, d) for w, d in FakeBed.log if w == "run") if partition in (None, p)]


def test_every_point_comes_back_whole_and_only_the_client_writes(client: Any, tmp_path: Path) -> None:
    spec = _spec()
    events: list[dict[str, Any]] = []
    outcome = run_distributed(spec, tmp_path, client, on_event=events.append)
    assert not outcome.incomplete and outcome.inferences == 2 * 3 and outcome.errors == 0
    records = read_records(tmp_path).records
    assert len(records) == 2 * (3 + 1)
    for point in points(spec):
        mine = [r for r in records if r["tags"]["point"] == point.key]
        assert [r["tags"].get("rep") for r in mine] == [None, 0, 1, 2]  # warm-up, then the repetitions in order
        assert [r["tags"]["draw"] for r in mine] == [0, 0, 1, 2]
        workers = {r["tags"]["worker"]["address"] for r in mine}
        assert len(workers) == 1 and mine[0]["tags"]["worker"]["hostname"]  # one worker measured the point
    assert {e["point"] for e in events} == {p.key for p in points(spec)}  # progress events from the workers
    assert {e["worker"] for e in events} <= set(client.scheduler_info()["workers"])  # the scheduler names them
    runs = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert runs[-1]["state"] == "complete" and runs[-1]["inferences"] == 6
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".jsonl"] == ["results.jsonl"]


def test_a_resumed_sweep_measures_only_the_missing_points_and_repetitions(client: Any, tmp_path: Path) -> None:
    run_distributed(_spec(PARTITIONS[:1]), tmp_path, client)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    (tmp_path / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # the last repetition is lost
    FakeBed.reset()
    outcome = run_distributed(_spec(PARTITIONS), tmp_path, client)
    assert outcome.skipped_points == 0 and not outcome.incomplete
    assert [t.get("rep") for t in _runs(PARTITIONS[0])] == [None, 2]  # a warm-up, then only repetition 2
    assert [t.get("rep") for t in _runs(PARTITIONS[1])] == [None, 0, 1, 2]
    assert [t.get("rep") for t in _runs(PARTITIONS[2])] == [None, 0, 1, 2]
    FakeBed.reset()
    again = run_distributed(_spec(PARTITIONS), tmp_path, client)
    assert again.skipped_points == 3 and again.inferences == 0 and _runs() == []  # nothing left: nothing sent
    counts: dict[str, int] = {}
    for record in read_records(tmp_path).records:
        if not record["tags"].get("warmup"):
            counts[record["tags"]["point"]] = counts.get(record["tags"]["point"], 0) + 1
    assert sorted(counts.values()) == [3, 3, 3]


def test_a_worker_keeps_its_testbed_for_the_next_point_of_the_profile(client: Any, tmp_path: Path) -> None:
    run_distributed(_spec(PARTITIONS), tmp_path, client)
    starts = [d for w, d in FakeBed.log if w == "start"]
    assert 1 <= len(starts) <= 2  # at most one per worker for three points
    assert all(d == ("ideal", ("mobilenet_v2",)) for d in starts)
    closes = [d for w, d in FakeBed.log if w == "close"]
    assert len(closes) == len(starts)  # released at the end of the sweep


def test_a_testbed_that_fails_twice_stops_the_sweep_and_keeps_what_came_back(client: Any, tmp_path: Path) -> None:
    FakeBed.reset(broken_partition=PARTITIONS[1])
    with pytest.raises(SweepError, match="failed twice on point .*block_13_project_BN"):
        run_distributed(_spec(PARTITIONS[1:2]), tmp_path, client)
    assert len(_runs(PARTITIONS[1])) == 2  # the point, then the point on a rebuilt testbed
    assert json.loads((tmp_path / "sweep.json").read_text())["runs"][-1]["state"] == "failed"


def test_a_cluster_without_testbed_workers_is_refused(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as plain:
        assert list_testbed_workers(plain) == {}
        with pytest.raises(DistributedError, match="--resources testbed=1 --preload splitbed.sweep.daskworker"):
            run_distributed(_spec(), tmp_path, plain, wait_s=0.5)


@pytest.mark.parametrize("address", ["localhost:8786", "http://h:8786", "tcp://", "tcp://host", ""])
def test_a_scheduler_address_that_is_not_one_is_a_usage_error(address: str) -> None:
    with pytest.raises(SweepSpecError, match="tcp://HOST:PORT"):
        check_address(address)
    assert check_address(" tcp://10.0.0.5:8786 ") == "tcp://10.0.0.5:8786"
    assert check_address("tls://[fe80::1]:8786") == "tls://[fe80::1]:8786"


def test_the_cli_refuses_a_bad_scheduler_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from splitbed.cli import app

    result = CliRunner().invoke(app, ["sweep", "--scheduler", "myhost:8786", "--out", str(tmp_path / "o"),
                                      "-m", "mobilenet_v2", "-p", "block_3_project_BN", "--profile", "ideal"])
    assert result.exit_code == 2, result.output
    assert "tcp://HOST:PORT" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


# -- what crosses between client and worker ------------------------------------------------------------------
def test_a_request_is_plain_json_and_round_trips() -> None:
    spec = _spec(rates=(10.0, 20.0))
    point = points(spec)[1]
    text = request_text(PointRequest(spec, point, ("mobilenet_v2",), done=2, errors=1))
    assert json.loads(text)["key"] == point.key
    parsed = parse_request(text)
    assert (parsed.spec, parsed.point, parsed.models, parsed.done, parsed.errors) == (
        spec, point, ("mobilenet_v2",), 2, 1)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(version=99), "another version"),
    (lambda d: d["spec"].update(colour="red"), "does not know"),
    (lambda d: d["point"].update(partition="other"), "the request says"),
    (lambda d: d["spec"].update(image="/no/such/image.png"), "this worker cannot run the sweep's options"),
    (lambda d: d.pop("done"), "malformed"),
])
def test_a_request_this_worker_cannot_honour_is_refused(change: Any, message: str) -> None:
    spec = _spec()
    data = json.loads(request_text(PointRequest(spec, points(spec)[0], ("mobilenet_v2",))))
    change(data)
    with pytest.raises(WireError, match=message):
        parse_request(json.dumps(data))


def _result(records: list[dict[str, Any]], point: str = "p") -> str:
    return result_text(PointResult(point=point, records=records, inferences=len(records)))


def test_a_result_is_checked_before_any_record_is_kept() -> None:
    good = {"record_type": "inference", "status": "ok", "tags": {"point": "p"}}
    assert parse_result(_result([good, good]), "p").records == [good, good]
    with pytest.raises(WireError, match="came back for"):
        parse_result(_result([good]), "q")
    with pytest.raises(WireError, match="belongs to point 'q'"):
        parse_result(_result([good, {**good, "tags": {"point": "q"}}]), "p")
    with pytest.raises(WireError, match="NaN"):
        parse_result(_result([good]).replace('"status":"ok"', '"status":"ok","x":NaN'), "p")
    with pytest.raises(WireError, match="not JSON"):
        parse_result("{", "p")
    with pytest.raises(WireError, match="JSON text"):
        parse_result(b"{}", "p")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        _result([{**good, "x": float("nan")}])  # a worker never sends one


def test_a_local_sweep_never_imports_dask() -> None:
    """Without --scheduler nothing of Dask is loaded (and so no Dask process can start)."""
    import subprocess
    import sys

    code = ("import sys, splitbed.cli, splitbed.commands.sweep, splitbed.sweep.runner, splitbed.sweep.distributed, "
            "splitbed.report; print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_a_machine_without_what_a_testbed_needs_is_named_with_the_doctors_fix() -> None:
    from splitbed.sweep.daskworker import REQUIRED_PROBES, unfit_reason

    fine = {name: {"ok": True, "must_have": True, "detail": "", "fix": ""} for name in REQUIRED_PROBES}
    assert unfit_reason({**fine, "rapl": {"ok": False}}) is None  # only what a testbed needs counts
    broken = {**fine, "netns": {"ok": False, "detail": "ip netns add failed: Operation not permitted",
                                "fix": "run as root"}}
    del broken["tensorflow"]
    assert unfit_reason(broken) == (
        "this machine cannot run a testbed: netns: ip netns add failed: Operation not permitted (fix: run as root); "
        "tensorflow: not probed (fix: see splitbed doctor)")
