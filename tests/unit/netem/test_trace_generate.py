"""The shipped driving trace: byte-identical to its seeded generator, and faithful to the cited figures.

Cited (Ghoshal et al., 5G-MeMU 2022, commercial mmWave uplink while driving): median 65 Mbit/s,
10 % of samples at 0 (outages), 90th percentile 402 Mbit/s. Tolerances: zero share within 2 percentage
points, median and p90 within 10 % (a finite, time-correlated sample of a model fitted to those figures).
"""

from __future__ import annotations

import math
import statistics

import pytest

from netem.profile import LinkProfile
from netem.trace import builtin_trace_dir, load_mahimahi, load_throughput
from netem.traces import generate


def test_committed_files_equal_the_generator_output() -> None:
    for name, make in generate.GENERATED.items():
        assert (builtin_trace_dir() / name).read_text(encoding="utf-8") == make(), name
    assert generate.main(["--check"]) == 0


def test_driving_trace_matches_the_cited_statistics() -> None:
    frames = sorted(load_throughput(builtin_trace_dir() / generate.DRIVING_FILE).mbit)
    values = [v * 1448 / 1514 for v in frames]  # the file holds frame rates; TCP receives 1448/1514 of them
    zero_share = sum(1 for v in values if v == 0.0) / len(values)
    median = statistics.median(values)
    p90 = statistics.quantiles(values, n=10, method="inclusive")[-1]
    assert abs(zero_share - 0.10) <= 0.02, zero_share
    assert abs(median - 65.0) / 65.0 <= 0.10, median
    assert abs(p90 - 402.0) / 402.0 <= 0.10, p90
    assert max(values) <= generate.DRIVING_CAP_MBIT + 1e-3


def test_the_fit_reproduces_the_figures_exactly_in_the_model() -> None:
    mu, sigma = generate.lognormal_fit(65.0, 402.0, 0.10)
    normal = statistics.NormalDist(mu, sigma)
    # overall CDF = 0.1 + 0.9 * up-state CDF of log(x)
    assert 0.1 + 0.9 * normal.cdf(math.log(65.0)) == pytest.approx(0.5)
    assert 0.1 + 0.9 * normal.cdf(math.log(402.0)) == pytest.approx(0.9)


def test_outages_last_seconds_not_single_samples() -> None:
    values = load_throughput(builtin_trace_dir() / generate.DRIVING_FILE).mbit
    runs = []
    length = 0
    for v in values:
        if v == 0.0:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    assert statistics.mean(runs) > 1.5  # the model's mean outage is 2 s


def test_driving_profile_points_at_the_generated_trace() -> None:
    profile = LinkProfile.load("5g-mmwave-driving")
    assert profile.uplink.trace is not None and profile.uplink.trace.kind == "throughput"
    assert profile.uplink.trace.path.endswith(generate.DRIVING_FILE)


def test_example_mahimahi_trace_is_48_then_12_mbit() -> None:
    trace = load_mahimahi(builtin_trace_dir() / generate.EXAMPLE_MAHIMAHI_FILE)
    first = sum(1 for ms in trace.opportunities_ms if ms <= 1000)
    assert first * 1500 * 8 / 1e6 == 48.0
    assert (len(trace.opportunities_ms) - first) * 1500 * 8 / 1e6 == 12.0
