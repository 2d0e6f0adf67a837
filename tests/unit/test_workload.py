"""Workload specs (splitbed.workload): parsing and its one-line refusals, arrival times, and the overload policy's
decisions, checked against hand-worked schedules and against the invariants of a first-come first-served UE with a
bounded waiting room, re-derived here from the fates alone."""

from __future__ import annotations

import random
import statistics

import pytest

from splitbed.sweep.pacing import stream_seed
from splitbed.workload import FrameFate, Pacer, Workload, WorkloadError, parse, simulate


@pytest.mark.parametrize(("text", "spec", "queue", "skip"), [
    ("single", "single", 0, False),
    ("periodic:10", "periodic:10/queue:1", 1, False),
    (" Periodic:7.50/skip ", "periodic:7.5/skip", 0, True),
    ("poisson:30/queue:4", "poisson:30/queue:4", 4, False),
    ("periodic:1/queue", "periodic:1/queue:1", 1, False),
    ("periodic:60/queue:1000", "periodic:60/queue:1000", 1000, False),
])
def test_specs_parse_to_their_canonical_spelling(text: str, spec: str, queue: int, skip: bool) -> None:
    workload = parse(text)
    assert (workload.spec, workload.queue, workload.skip) == (spec, queue, skip)
    assert parse(workload.spec) == workload  # the canonical spelling reads back to the same workload
    assert workload.paced == (spec != "single")


@pytest.mark.parametrize(("text", "fix"), [
    ("periodic:0", "out of range; give 1..60, e.g. periodic:1"),
    ("periodic:61", "out of range; give 1..60, e.g. periodic:60"),
    ("perodic:10", "did you mean periodic?"),
    ("possion:5", "did you mean poisson?"),
    ("singel", "did you mean single?"),
    ("camera:10", "choose single, periodic:FPS or poisson:RATE"),
    ("periodic", "write periodic:FPS, e.g. periodic:10"),
    ("periodic:ten", "write periodic:FPS"),
    ("periodic:-5", "write periodic:FPS"),
    ("periodic:10/queue:0", "/queue:N (N = 1..1000 waiting frames) or /skip"),
    ("periodic:10/drop", "/queue:N (N = 1..1000 waiting frames) or /skip"),
    ("single/skip", "write just single"),
    ("single:5", "write just single"),
    ("", "give single, periodic:FPS or poisson:RATE"),
    ("periodic:1" + "0" * 100, "give single, periodic:FPS or poisson:RATE"),
])
def test_bad_specs_are_refused_in_one_line_that_says_the_fix(text: str, fix: str) -> None:
    with pytest.raises(WorkloadError) as caught:
        parse(text)
    message = str(caught.value)
    assert fix in message and "\n" not in message and len(message) < 200


def test_periodic_frames_are_captured_one_period_apart() -> None:
    times = parse("periodic:8").arrivals(17)
    assert times[0] == 0.0 and len(times) == 17
    assert all(b - a == pytest.approx(1 / 8) for a, b in zip(times, times[1:], strict=False))
    assert parse("single").arrivals(5) == []
    with pytest.raises(WorkloadError):
        parse("periodic:8").arrivals(10_001)


def test_poisson_arrivals_repeat_with_their_seed_and_have_exponential_gaps() -> None:
    workload = parse("poisson:20")
    first = workload.arrivals(5000, seed=7)
    assert first == workload.arrivals(5000, seed=7) and first != workload.arrivals(5000, seed=8)
    gaps = [b - a for a, b in zip(first, first[1:], strict=False)]
    assert first[0] == 0.0 and all(g >= 0 for g in gaps)
    # exponential of rate 20: mean 1/20 (standard error of the mean 1/20/sqrt(4999) = 1.4 %), CV 1
    assert statistics.fmean(gaps) == pytest.approx(1 / 20, rel=0.08)
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.1)
    # the sweep seeds a point's stream from its key and first frame: the same point draws the same arrivals
    assert stream_seed("ideal|vgg16|fc1", 0) == stream_seed("ideal|vgg16|fc1", 0)
    assert 0 <= stream_seed("ideal|vgg16|fc1", 0) < 2**53  # exact in a JSON reader's doubles
    assert len({stream_seed("ideal|vgg16|fc1", 0), stream_seed("ideal|vgg16|fc1", 3),
                stream_seed("ideal|vgg16|pool", 0)}) == 3


def test_a_ue_that_keeps_up_never_queues_drops_or_runs_late() -> None:
    workload = parse("periodic:10/queue:1")
    arrivals = workload.arrivals(20)
    fates = simulate(workload, arrivals, [0.09] * 20)  # 90 ms per frame, a frame every 100 ms
    assert [f.dropped or f.queued or f.late for f in fates] == [False] * 20
    assert all(f.wait == 0.0 and f.latency == pytest.approx(0.09) for f in fates)


def test_an_overloaded_ue_with_a_queue_of_one_runs_the_queued_frame_and_drops_the_rest() -> None:
    """1 frame/s, 2.5 s per frame: worked by hand. Frame 0 runs 0-2.5; frames 1 and 2 arrive meanwhile: 1 waits,
    2 finds the queue full. Frame 1 runs 2.5-5.0 (waited 1.5 s); 3 waits, 4 and 5 are dropped; 3 runs 5.0-7.5."""
    workload = parse("periodic:1/queue:1")
    fates = simulate(workload, workload.arrivals(6), [2.5] * 6)
    assert [f.dropped for f in fates] == [False, False, True, False, True, True]
    assert [f.queued for f in fates] == [False, True, False, True, False, False]
    assert [(f.start, f.end) for f in fates if not f.dropped] == [(0.0, 2.5), (2.5, 5.0), (5.0, 7.5)]
    assert [f.wait for f in fates if not f.dropped] == [0.0, 1.5, 2.0]
    assert all(f.late for f in fates if not f.dropped)  # 2.5 s and more from capture, against 1 s between frames


def test_skip_drops_every_frame_that_arrives_while_the_ue_is_busy() -> None:
    workload = parse("periodic:1/skip")
    fates = simulate(workload, workload.arrivals(6), [2.5] * 6)
    assert [f.frame for f in fates if not f.dropped] == [0, 3]  # 3 arrives at 3.0, after frame 0 ended at 2.5
    assert [(f.start, f.wait) for f in fates if not f.dropped] == [(0.0, 0.0), (3.0, 0.0)]


def _check_invariants(workload: Workload, service: list[float], fates: list[FrameFate]) -> None:
    """What a FIFO UE with `workload.queue` waiting places must do, re-derived from the fates."""
    ran = sorted((f for f in fates if not f.dropped), key=lambda f: f.start or 0.0)
    assert [f.frame for f in ran] == sorted(f.frame for f in ran)  # first come, first served
    assert ran and ran[0].frame == 0 and ran[0].start == 0.0  # the first frame finds the UE idle
    previous_end: float | None = None
    for fate in ran:  # the UE never idles while a frame waits, and a frame waits iff it came while the UE worked
        assert fate.start == (fate.arrival if previous_end is None else max(previous_end, fate.arrival))
        assert fate.end == pytest.approx((fate.start or 0.0) + service[fate.frame])
        assert fate.queued == (previous_end is not None and fate.arrival <= previous_end)
        previous_end = fate.end
    for fate in fates:
        t = fate.arrival
        waiting = [f for f in ran if f.queued and f.frame < fate.frame and (f.start or 0.0) >= t]
        assert len(waiting) <= workload.queue  # never more frames waiting than the bound
        if fate.dropped:  # dropped only when the UE was busy and the waiting room full at its arrival
            assert any((f.start or 0.0) <= t <= (f.end or 0.0) for f in ran)
            assert len(waiting) == workload.queue


@pytest.mark.parametrize("text", ["periodic:10/queue:1", "periodic:10/queue:3", "periodic:10/skip",
                                  "poisson:10/queue:2", "poisson:10/skip"])
def test_random_schedules_keep_the_policy_s_invariants(text: str) -> None:
    workload = parse(text)
    rng = random.Random(text)
    outcomes = {"dropped": 0, "queued": 0, "straight": 0}
    for trial in range(40):
        arrivals = workload.arrivals(30, seed=trial)
        service = [rng.uniform(0.0, 0.35) for _ in arrivals]
        fates = simulate(workload, arrivals, service)
        assert [f.frame for f in fates] == list(range(30))
        _check_invariants(workload, service, fates)
        for fate in fates:
            outcomes["dropped" if fate.dropped else "queued" if fate.queued else "straight"] += 1
    assert outcomes["dropped"] > 0 and outcomes["straight"] > 0  # the schedules exercised both sides of the policy
    assert (outcomes["queued"] == 0) == workload.skip


def test_the_pacer_refuses_what_it_cannot_schedule() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        Pacer([0.0, 2.0, 1.0], 1)
    with pytest.raises(ValueError, match="service times"):
        simulate(parse("periodic:5"), [0.0, 0.2], [0.1])
    with pytest.raises(ValueError, match="finite"):
        simulate(parse("periodic:5"), [0.0, 0.2], [0.1, float("nan")])


def test_make_sweep_runs_the_paced_workload_the_docs_justify() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    target = re.search(r"^sweep:.*\n\t(.+)$", (root / "Makefile").read_text(), flags=re.M)
    assert target, "the Makefile has no sweep target"
    given = re.search(r"--workload (\S+)", target.group(1))
    assert given, target.group(1)
    workload = parse(given.group(1))
    assert workload.paced and workload.spec == given.group(1)
    assert f"Why `make sweep` runs `{workload.spec}`" in (root / "docs" / "SWEEP.md").read_text()
    assert f"--workload {workload.spec}" in (root / "README.md").read_text()
