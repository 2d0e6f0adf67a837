"""What Dask adds per sweep point, as a benchmark (docs/DISTRIBUTED.md, "Overhead"): the round trip of one task
that returns a point-sized JSON result (15 records of a real sweep's size) through a LocalCluster worker process
with the `testbed` resource, against the client's own work for that point in the same run (appending the 15
records to results.jsonl, fsync per line: what a local sweep pays too). The ratio goes to extra_info; the check
is that Dask's share stays of the order of the client's own (a regression such as a polling loop or a per-task
connection would be 100x)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from splitbed.sweep.store import ResultStore

pytestmark = pytest.mark.bench
RECORDS = 15
RECORD_BYTES = 11_000  # a real record's JSON size (mobilenet_v2, with link, host and resources)
MAX_RATIO = 20.0
RESULTS: dict[str, float] = {}


def _point_result() -> str:
    record = {"record_type": "inference", "status": "ok", "tags": {"point": "p"}, "pad": "x" * RECORD_BYTES}
    return json.dumps({"records": [record] * RECORDS})


def echo(text: str) -> str:
    return text


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"testbed": 1},
                      dashboard_address=":0", memory_limit=0) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


def _median(benchmark: Any) -> float:
    return float(benchmark.stats.stats.median)


def test_client_appends_a_points_records_baseline(benchmark: Any, tmp_path: Path) -> None:
    records = json.loads(_point_result())["records"]
    with ResultStore(tmp_path) as store:
        benchmark.pedantic(lambda: [store.append(r) for r in records], rounds=20, warmup_rounds=2, iterations=1)
    RESULTS["append_s"] = _median(benchmark)


def test_dask_round_trip_of_a_point_result(benchmark: Any, client: Any) -> None:
    text = _point_result()

    def round_trip() -> None:
        assert client.submit(echo, text, resources={"testbed": 1}, pure=False).result() == text

    benchmark.pedantic(round_trip, rounds=30, warmup_rounds=3, iterations=1)
    RESULTS["dask_s"] = _median(benchmark)
    if "append_s" in RESULTS:
        ratio = RESULTS["dask_s"] / RESULTS["append_s"]
        benchmark.extra_info.update(dask_ms=1000 * RESULTS["dask_s"], append_ms=1000 * RESULTS["append_s"],
                                    ratio=ratio, result_bytes=len(text))
        assert ratio < MAX_RATIO, f"Dask's round trip is {ratio:.1f}x the client's own writes for a point"
