"""Cells in the sweep: `ues` is a point dimension (key, testbed grouping, checks, the Dask wire) and the cell
report's capacity and fairness arithmetic (splitbed.report.cell)."""

from __future__ import annotations

import pytest

from splitbed.report.cell import analyse, base_key, jain_index, nearest_rank
from splitbed.sweep.plan import SweepSpec, SweepSpecError, points
from splitbed.sweep.pointwire import PointRequest, parse_request, request_text


def spec(**kw: object) -> SweepSpec:
    return SweepSpec(models=("mobilenet_v2",), partitions=("block_3_project_BN",), baselines=(), **kw)  # type: ignore[arg-type]


def test_each_cell_size_is_its_own_point_and_testbed_and_old_keys_stay() -> None:
    plain = points(spec())
    cells = points(spec(ues=(1, 2, 8)))
    assert [p.ues for p in cells] == [1, 2, 8]
    assert [p.key.rsplit("|", 1)[1] for p in cells] == ["ues=1", "ues=2", "ues=8"]
    assert len({p.bed for p in cells}) == 3
    assert plain[0].ues == 0 and "ues=" not in plain[0].key  # keys of sweeps without a cell are unchanged
    assert {base_key(p.key) for p in cells} == {plain[0].key}
    assert [p.wanted(5) for p in cells] == [5, 10, 40] and plain[0].wanted(5) == 5  # repetitions per UE


@pytest.mark.parametrize(("options", "message"), [
    ({"ues": (0,)}, "1..32"), ({"ues": (33,)}, "1..32"),
    ({"ues": (2,), "backend": "kernel"}, "userspace"), ({"ues": (2,), "runtime": "docker"}, "process"),
])
def test_bad_cell_options_get_one_line(options: dict[str, object], message: str) -> None:
    with pytest.raises(SweepSpecError, match=message):
        spec(**options)


def test_the_cell_size_travels_to_a_dask_worker() -> None:
    sweep = spec(ues=(4,))
    point = points(sweep)[0]
    parsed = parse_request(request_text(PointRequest(sweep, point, ("mobilenet_v2",))))
    assert parsed.spec.ues == (4,) and parsed.point.ues == 4 and parsed.point.key == point.key


def test_jain_index_and_nearest_rank() -> None:
    assert jain_index([5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain_index([9.0, 0.0, 0.0]) == pytest.approx(1 / 3)
    assert jain_index([]) is None
    assert nearest_rank([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.95) == 10
    assert nearest_rank([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5) == 5


def record(n: int, ue: int, delivery: float, nbytes: int = 100_000, warmup: bool = False) -> dict[str, object]:
    return {"status": "ok", "delivery_ms": delivery, "e2e_latency_ms": delivery + 20, "uplink_bytes": nbytes,
            "remote_queue_wait_ms": 0.5 * (n - 1),
            "tags": {"point": f"p|m|x|ues={n}", **({"warmup": True} if warmup else {})},
            "cell": {"ue": ue, "ues": n, "scheduler": "rr", "host_cpu_bottleneck": n > 1}}


def test_capacity_is_the_largest_n_whose_percentile_meets_the_budget() -> None:
    records = [record(1, 0, 5.0)] * 4 + [record(1, 0, 900.0, warmup=True)]
    records += [record(2, ue, 9.0 + ue) for ue in (0, 1) for _ in range(4)]
    records += [record(4, ue, 12.0 if ue else 30.0) for ue in range(4) for _ in range(4)]  # UE 0 starved
    result = analyse(records, budget_ms=15.0, percentile=95)
    (config,) = result["configs"]
    assert config["config"] == "p|m|x"
    assert [r["meets_budget"] for r in config["rows"]] == [True, True, False]
    assert config["capacity_ues"] == 2
    assert config["rows"][0]["deliveries"] == 4  # the warm-up is left out
    fair, unfair = config["rows"][1]["jain_goodput"], config["rows"][2]["jain_goodput"]
    assert fair > 0.99 and unfair < fair
    assert config["rows"][2]["host_cpu_bottleneck"] and not config["rows"][0]["host_cpu_bottleneck"]
