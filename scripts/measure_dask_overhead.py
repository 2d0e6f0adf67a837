"""What Dask adds to a sweep, per point, measured on this machine (docs/DISTRIBUTED.md, "Overhead").

Runs the same small real sweep (mobilenet_v2, two partitions x two carriages = 4 points, 3 repetitions + 1
warm-up, on `ideal`, userspace link, random weights) alternately on this machine (splitbed.sweep.run_sweep) and
through a Dask LocalCluster of one worker process (splitbed.sweep.distributed, the splitbed preload), `--rounds`
times each, every run into a fresh directory and with its own testbed start. Prints, per run, the wall time and,
for the distributed runs, the time the worker spent in its point tasks; then the medians:

- distributed minus local wall time, per point (everything Dask adds, testbed start included on both sides),
  and the same without the testbed starts (whose own spread is seconds on a loaded machine);
- distributed wall time minus the worker's time in its tasks and minus the once-per-sweep cluster check and
  testbed release, per point (submission, scheduling, the JSON result's way back, the client's checks and
  writes), and those once-per-sweep costs;
- Dask's round trip of one task with a point-sized JSON result (sequential, after warm-up).

Needs root (namespaces). Usage: .venv/bin/python scripts/measure_dask_overhead.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("SPLITBED_OFFLINE", "1")
    fixed = _FixedCosts()
    logging.getLogger("splitbed.sweep.distributed").addHandler(fixed)
    logging.getLogger("splitbed.sweep.distributed").setLevel(logging.INFO)
    from distributed import Client, LocalCluster

    from splitbed.sweep import SweepSpec, run_sweep
    from splitbed.sweep.daskworker import RESOURCE
    from splitbed.sweep.distributed import run_distributed

    spec = SweepSpec(profiles=("ideal",), models=("mobilenet_v2",),
                     partitions=("block_3_project_BN", "block_13_project_BN"), encodings=("tlv", "json-baseline"),
                     repetitions=3, warmup=1, warmup_max=1, weights="random:0", backend="userspace")
    points = 4
    local_walls: list[float] = []
    dist_walls: list[float] = []
    net: list[float] = []  # (distributed - its testbed start) - (local - its testbed start)
    dask_shares: list[float] = []
    begin = time.monotonic()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={RESOURCE: 1},
                      preload=["splitbed.sweep.daskworker"], memory_limit=0, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        print(f"cluster up (scheduler, one worker, preload with the doctor check): {time.monotonic() - begin:.1f} s")
        for index in range(args.rounds):
            with tempfile.TemporaryDirectory() as local_dir, tempfile.TemporaryDirectory() as dist_dir:
                local = run_sweep(spec, local_dir)
                walls: list[float] = []
                dist = run_distributed(spec, dist_dir, client, on_result=lambda r, into=walls: into.append(r.wall_s))
                assert not local.incomplete and not dist.incomplete
                local_walls.append(local.wall_s)
                dist_walls.append(dist.wall_s)
                dask_shares.append((dist.wall_s - sum(walls) - fixed.take()) / points)
                local_start = sum(s["start_s"] for s in local.testbed_starts)
                dist_start = sum(s["start_s"] for s in dist.testbed_starts)
                net.append((dist.wall_s - dist_start) - (local.wall_s - local_start))
                print(f"round {index + 1}: local {local.wall_s:.1f} s (testbed start {local_start:.1f} s), "
                      f"distributed {dist.wall_s:.1f} s (testbed start {dist_start:.1f} s, worker in its tasks "
                      f"{sum(walls):.1f} s)")
        result = json.dumps({"records": [{"pad": "x" * 11_000}] * 15})  # ~165 kB: a point's 15 records
        trips = []
        for _ in range(35):
            start = time.perf_counter()
            client.submit(_echo, result, resources={RESOURCE: 1}, pure=False).result()
            trips.append(time.perf_counter() - start)
    print(f"median of {args.rounds}: local {statistics.median(local_walls):.1f} s, distributed "
          f"{statistics.median(dist_walls):.1f} s for {points} points")
    extra = statistics.median(d - w for d, w in zip(dist_walls, local_walls, strict=True)) / points
    print(f"distributed - local, per point: {extra:.2f} s; without the testbed starts: "
          f"{statistics.median(net) / points:.2f} s")
    print(f"distributed wall - worker's task time - cluster check and testbed release, per point: "
          f"{statistics.median(dask_shares):.3f} s (check + release per sweep: median "
          f"{statistics.median(fixed.seen):.2f} s)")
    print(f"Dask round trip of one task with a {len(result) // 1000} kB result: median "
          f"{1000 * statistics.median(trips[5:]):.1f} ms")


class _FixedCosts(logging.Handler):
    """Collects the distributed sweep's once-per-sweep costs it logs (the cluster check, the testbed release)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = 0.0
        self.seen: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg in ("testbed workers checked in %.3f s", "workers' testbeds released in %.3f s"):
            self.pending += float(record.args[0])  # type: ignore[index]

    def take(self) -> float:
        value, self.pending = self.pending, 0.0
        self.seen.append(value)
        return value


def _echo(text: str) -> str:
    return text


if __name__ == "__main__":
    main()
