"""Independent repetitions (netem.seeds, splitbed.sweep.realisations): each inference of a point draws its own
loss/jitter realisation, from seeds that a repeated or resumed sweep derives again bit for bit.

The sweep runs here against a stand-in testbed that only records which link it was given (the real link,
reseeded live, is measured in tests/integration/netem/test_link_reseed.py and on the real testbed in
tests/integration/sweep/test_sweep_run.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from netem.link.pipeline import build_stages
from netem.link.stages import LossStage
from netem.profile import MAX_SEED, DirectionProfile, LinkProfile, RandomLoss
from netem.seeds import derive_seed, is_random, reseeded
from splitbed.sweep import SweepSpec, read_records, run_sweep, summarise
from splitbed.sweep.realisations import channel_key, independent_draws, link_for
from splitbed.sweep.store import is_measurement


def test_derived_seeds_are_stable_distinct_and_in_range() -> None:
    seed = derive_seed(1, "lte|vgg16|fc1", 0, "link.uplink")
    assert seed == derive_seed(1, "lte|vgg16|fc1", 0, "link.uplink")  # no per-process salt (unlike hash())
    others = {derive_seed(base, key, rep, stream) for base in (1, 2) for key in ("a|b", "a|c") for rep in range(50)
              for stream in ("link.uplink", "link.downlink", "workload.arrivals")}
    assert len(others) == 2 * 2 * 50 * 3 and all(0 <= s <= MAX_SEED for s in others)
    # the inputs are kept apart: moving a character between key and stream gives another seed
    assert derive_seed(1, "a|b", 0, "c") != derive_seed(1, "a", 0, "b|c")
    for bad in ((-1, "k", 0, "s"), (1, "", 0, "s"), (1, "k", -1, "s"), (1, "k", 0, ""), (True, "k", 0, "s")):
        with pytest.raises(ValueError):
            derive_seed(*bad)  # type: ignore[arg-type]


def test_reseeding_changes_what_the_link_loses_and_nothing_else() -> None:
    lte = LinkProfile.load("lte")
    lte = lte.replace(uplink=dataclasses.replace(lte.uplink, loss=RandomLoss(0.01)))
    again, other = reseeded(lte, "p", 0), reseeded(lte, "p", 1)
    assert again == reseeded(lte, "p", 0) and again != other
    assert again.replace(uplink=lte.uplink, downlink=lte.downlink) == lte  # only seeds moved

    def lost(profile: LinkProfile) -> list[int]:
        (stage,) = [s for s in build_stages(profile.uplink, 0) if isinstance(s, LossStage)]
        return [i for i in range(20_000) if stage.model.lose()]

    assert lost(again) == lost(reseeded(lte, "p", 0)) and lost(again) != lost(other)
    assert is_random(lte) and not is_random(LinkProfile.load("5g-split-ai"))


class RecordingBed:
    """A testbed stand-in: remembers the links it is given and answers each job with one record."""

    def __init__(self, profile: str, fail_draws: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.profile = LinkProfile.load(profile)
        self.updates: list[LinkProfile] = []
        self.fail_draws = fail_draws

    def start(self) -> RecordingBed:
        return self

    def close(self) -> None:
        pass

    def update_link(self, profile: LinkProfile) -> None:
        self.profile = profile
        self.updates.append(profile)

    def link_info(self) -> dict[str, Any]:
        return {"profile": self.profile.to_dict(), "backend": "userspace"}

    def run(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        failed = not job["tags"].get("warmup") and job["tags"]["draw"] in self.fail_draws
        return [{"record_type": "inference", "status": "error" if failed else "ok", "tags": job["tags"],
                 "model": job["model"], "partition_name": job["partition"], "partition_id": 1,
                 "encoding": job["encoding"], "link": self.link_info(), "e2e_latency_ms": 10.0}]


def _lossy_profile(tmp_path: Path) -> Path:
    path = tmp_path / "lossy.toml"
    path.write_text('name = "lossy"\ndescription = "d"\nsource = "s"\nseed = 7\n'
                    '[uplink]\nrate_mbit = 10.0\nloss = { model = "random", p = 0.01 }\n'
                    '[downlink]\njitter_ms = 1.0\n')
    return path


def _sweep(tmp_path: Path, out: str, profile: Path, **kwargs: Any) -> tuple[RecordingBed, list[dict[str, Any]]]:
    beds: list[RecordingBed] = []

    def factory(**options: Any) -> RecordingBed:
        beds.append(RecordingBed(options["profile"], **kwargs))
        return beds[-1]

    spec = SweepSpec(baselines=(), profiles=(str(profile),), models=("vgg16",), partitions=("fc1", "block5_pool"),
                     repetitions=4, warmup=1, weights="random:0")
    run_sweep(spec, tmp_path / out, testbed_factory=factory)
    return beds[0], read_records(tmp_path / out).records


def test_a_repeated_sweep_draws_the_same_seeds_and_repetitions_draw_different_ones(tmp_path: Path) -> None:
    profile = _lossy_profile(tmp_path)
    _, first = _sweep(tmp_path, "a", profile)
    _, second = _sweep(tmp_path, "b", profile)
    seeds = [json.dumps(r["tags"]["realisation"], sort_keys=True) for r in first]
    assert seeds == [json.dumps(r["tags"]["realisation"], sort_keys=True) for r in second]  # bit-identical
    for point in {r["tags"]["point"] for r in first}:
        mine = [r for r in first if r["tags"]["point"] == point and is_measurement(r)]
        assert [r["tags"]["draw"] for r in mine] == [0, 1, 2, 3]
        ups = [r["link"]["profile"]["uplink"]["seed"] for r in mine]
        downs = [r["link"]["profile"]["downlink"]["seed"] for r in mine]
        assert len(set(ups)) == len(set(downs)) == 4  # every repetition its own draw, per direction
        assert ups == [derive_seed(7, point, k, "link.uplink") for k in range(4)]
        assert downs == [derive_seed(8, point, k, "link.downlink") for k in range(4)]  # the file's seed + 1
        assert all(r["tags"]["realisation"]["base_seeds"] == {"uplink": 7, "downlink": 8} for r in mine)
    summaries = summarise(first)
    assert [s.independent_draws for s in summaries] == [4, 4]


def test_a_failed_inference_used_its_draw_and_the_retry_takes_the_next(tmp_path: Path) -> None:
    _, records = _sweep(tmp_path, "a", _lossy_profile(tmp_path), fail_draws={1})
    point = records[0]["tags"]["point"]
    mine = [(r["tags"]["draw"], r["status"]) for r in records if r["tags"]["point"] == point and is_measurement(r)]
    assert mine == [(0, "ok"), (1, "error"), (2, "ok"), (3, "ok"), (4, "ok")]


def test_a_resumed_point_continues_with_the_draws_it_had_not_used(tmp_path: Path) -> None:
    profile = _lossy_profile(tmp_path)
    _, whole = _sweep(tmp_path, "a", profile)
    _, _ = _sweep(tmp_path, "b", profile)
    lines = (tmp_path / "b" / "results.jsonl").read_text().splitlines()
    (tmp_path / "b" / "results.jsonl").write_text("\n".join(lines[:3]) + "\n")  # cut after two repetitions
    _, resumed = _sweep(tmp_path, "b", profile)
    key = lambda r: (r["tags"]["point"], r["tags"]["draw"], r["link"]["profile"]["uplink"]["seed"])  # noqa: E731
    assert sorted(key(r) for r in resumed if is_measurement(r)) == sorted(key(r) for r in whole if is_measurement(r))


def test_a_deterministic_link_is_left_alone_and_says_so(tmp_path: Path) -> None:
    bed, records = _sweep(tmp_path, "a", Path(LinkProfile.load("5g-split-ai").name))
    assert bed.updates == [] and all(channel_key(r) is None for r in records)
    assert [s.independent_draws for s in summarise(records)] == [None, None]
    assert link_for(LinkProfile.load("5g-split-ai"), "k", 3, 0, 10).profile is None


def test_old_records_with_one_seed_rest_on_one_draw() -> None:
    lossy = LinkProfile("x", "d", "s", DirectionProfile(loss=RandomLoss(0.01)), DirectionProfile())
    records = [{"link": {"profile": lossy.to_dict()}} for _ in range(10)]
    assert independent_draws(records) == 1


def test_a_trace_driven_random_link_gets_its_draw_and_its_trace_place_in_one_update() -> None:
    driving = LinkProfile.load("5g-mmwave-driving")  # a throughput trace (period 1800 s) and jitter both ways
    realisation = link_for(driving, "k", 3, 2, 10)
    assert realisation.profile is not None and realisation.profile.uplink.trace is not None
    assert realisation.profile.uplink.trace.start_s == pytest.approx(360.0)  # repetition 2 of 10: 2/10 in
    assert realisation.profile.uplink.seed == derive_seed(driving.uplink.seed, "k", 3, "link.uplink")
    assert realisation.tag["draw"] == 3 and realisation.tag["seeds"]["uplink"] == realisation.profile.uplink.seed
