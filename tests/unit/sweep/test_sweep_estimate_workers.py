"""`--estimate` on a Dask cluster (splitbed.sweep.estimate.deal): points dealt in order to the worker free
first, a testbed start per profile per worker, Dask's cost per point; one worker without Dask is the local
estimate unchanged."""

from __future__ import annotations

import pytest

from splitbed.sweep.estimate import (
    DASK_OVERHEAD_PER_POINT_S,
    DASK_OVERHEAD_PER_SWEEP_S,
    TESTBED_START_S,
    deal,
    describe,
    estimate,
)
from splitbed.sweep.plan import SweepSpec
from tests.unit.sweep.test_sweep_estimate import _timing

TIMINGS = {"mobilenet_v2": {("tlv", "none"): _timing("tlv")}}


def _spec(*profiles: str) -> SweepSpec:
    return SweepSpec(baselines=(), profiles=profiles, models=("mobilenet_v2",), partitions=("block_3_project_BN", "out_relu"),
                     repetitions=4, warmup=1)


def test_points_are_dealt_to_the_worker_free_first_with_a_testbed_start_per_profile() -> None:
    costs = [(10.0, "a1"), (10.0, "a2"), (10.0, "a3"), (10.0, "a4"), (1.0, "b1")]
    profiles = ["a", "a", "a", "a", "b"]
    wall, busy = deal(costs, profiles, 2)
    per_point = 10.0 + DASK_OVERHEAD_PER_POINT_S
    # each worker: one start on a, two points of a; then b goes to the first free one, which starts b's testbed
    once = DASK_OVERHEAD_PER_SWEEP_S
    assert wall == pytest.approx(TESTBED_START_S + 2 * per_point + TESTBED_START_S + 1.0 + DASK_OVERHEAD_PER_POINT_S
                                 + once)
    assert busy == pytest.approx(3 * TESTBED_START_S + 4 * per_point + 1.0 + DASK_OVERHEAD_PER_POINT_S + once)
    one_wall, one_busy = deal(costs, profiles, 1)
    assert one_wall == one_busy == pytest.approx(2 * TESTBED_START_S + 41.0 + 5 * DASK_OVERHEAD_PER_POINT_S + once)


def test_more_workers_shorten_the_wall_time_but_not_the_machine_time() -> None:
    spec = _spec("lte", "5g-split-ai")
    local = estimate(spec, timings=TIMINGS)
    assert local.workers == 1 and local.machine_s == local.total_s
    on_one = estimate(spec, timings=TIMINGS, workers=1, distributed=True)
    assert on_one.total_s == pytest.approx(local.total_s + 4 * DASK_OVERHEAD_PER_POINT_S + DASK_OVERHEAD_PER_SWEEP_S)
    on_four = estimate(spec, timings=TIMINGS, workers=4)
    longest = on_four.slowest[0][0]  # four points on four machines: the longest point after its testbed start
    assert on_four.total_s == pytest.approx(TESTBED_START_S + longest + DASK_OVERHEAD_PER_POINT_S
                                            + DASK_OVERHEAD_PER_SWEEP_S)
    assert on_four.total_s < local.total_s
    assert on_four.machine_s > local.total_s  # each worker starts its own testbed
    assert "on 4 testbed worker(s)" in describe(on_four)[0]
    assert any("each as fast as this machine" in line for line in describe(on_four))
    with pytest.raises(ValueError, match="at least 1"):
        estimate(spec, timings=TIMINGS, workers=0)
