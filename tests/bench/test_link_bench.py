"""Userspace link benchmarks, each against a baseline measured in the same run (numbers in docs/LINK.md):

- forwarding: time to move a fixed TCP transfer (iperf3 -n) through the unshaped link process vs over the
  same veths without it (kernel backend, no qdisc); Mbit/s and the ratio go to extra_info;
- forwarder options, one at a time off (slow): what each of them is worth;
- added latency: ping RTT minus 2 x delay through a 2 x 10 ms link, idle and while carrying 144 Mbit/s of
  UDP, against the host stack's own RTT on the bare veths; percentiles go to extra_info; (slow) the same
  with kernel timestamps, the spin or real-time scheduling off; ping and the load run under SCHED_FIFO 5;
- pipeline cost per frame (pure Python, no network): a 5g-embb uplink (loss, rate, jitter) vs a plain deque.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from collections import deque
from typing import Any

import pytest

from netem.link import ForwarderOptions
from netem.link.pipeline import DirectionPipeline
from netem.profile import DirectionProfile, LinkProfile
from netem.topology import Topology

pytestmark = [pytest.mark.bench, pytest.mark.requires("realtime")]
TRANSFER = "200M"
RESULTS: dict[str, float] = {}


def _median(benchmark: Any) -> float | None:
    stats = getattr(benchmark, "stats", None)
    return None if stats is None or getattr(stats, "stats", None) is None else float(stats.stats.median)


def _wait_listening(topo: Topology, port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if f":{port} " in topo.run("edge", ["ss", "-lntuH"], timeout=10).stdout:
            return
        time.sleep(0.05)
    raise AssertionError(f"iperf3 does not listen on {port}")


def _transfer(topo: Topology, port: int, size: str = TRANSFER) -> float:
    """One iperf3 TCP transfer of ``size`` ue -> edge; the receiver's Mbit/s."""
    server = topo.popen("edge", ["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL)
    _wait_listening(topo, port)
    done = topo.run("ue", ["timeout", "60", "iperf3", "-c", topo.edge_addr, "-p", str(port), "-n", size, "-J"],
                    timeout=90)
    server.wait(30)
    assert done.returncode == 0, done.stderr
    return float(json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6


def _bench_transfer(benchmark: Any, topo: Topology, port: int, key: str, rounds: int = 3) -> float:
    rates: list[float] = []
    benchmark.pedantic(lambda: rates.append(_transfer(topo, port)), rounds=rounds, iterations=1)
    best = max(rates)
    benchmark.extra_info["mbit_per_s"] = [round(r, 1) for r in rates]
    benchmark.extra_info["best_mbit_per_s"] = round(best, 1)
    RESULTS[key] = best
    return best


@pytest.mark.root
def test_veth_without_link_baseline(benchmark: Any) -> None:
    benchmark.group = "netem-link-forwarding"
    with Topology("ideal", backend="kernel") as topo:
        _bench_transfer(benchmark, topo, 5511, "veth")


@pytest.mark.root
def test_unshaped_forwarding_throughput(benchmark: Any) -> None:
    benchmark.group = "netem-link-forwarding"
    with Topology("ideal", backend="userspace") as topo:
        best = _bench_transfer(benchmark, topo, 5512, "link")
        link = topo.stats()["link"]
    if RESULTS.get("veth"):
        benchmark.extra_info["ratio_to_bare_veth"] = round(best / RESULTS["veth"], 3)
    benchmark.extra_info["socket_overflow_drops"] = link["uplink"]["dropped"]["socket_overflow"]
    assert best >= 300, f"unshaped forwarding {best:.0f} Mbit/s is below the 300 Mbit/s bar"


ABLATIONS = {
    "all-on": {},
    "no-ignore-outgoing": {"ignore_outgoing": False},
    "no-qdisc-bypass": {"qdisc_bypass": False},
    "batch-1": {"batch": 1},
    "default-socket-buffers": {"socket_buffer_bytes": 0},
    "normal-scheduling": {"realtime_priority": 0},
}


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("variant", list(ABLATIONS))
def test_forwarder_option_ablation(benchmark: Any, variant: str) -> None:
    benchmark.group = "netem-link-options"
    with Topology("ideal", backend="userspace", link_options=ForwarderOptions(**ABLATIONS[variant])) as topo:
        assert topo.describe()["link"]["process"]["options"] == ForwarderOptions(**ABLATIONS[variant]).to_dict()
        best = _bench_transfer(benchmark, topo, 5513, variant, rounds=2)
        benchmark.extra_info["socket_overflow_drops"] = topo.stats()["link"]["uplink"]["dropped"]["socket_overflow"]
    if RESULTS.get("all-on") and variant != "all-on":
        benchmark.extra_info["ratio_to_all_on"] = round(best / RESULTS["all-on"], 3)


def _realtime(argv: list[str]) -> list[str]:
    """Measuring tools under SCHED_FIFO 5 (below the link's 10), so a busy host does not delay the tool itself."""
    return ["chrt", "-f", "5", *argv]


def _rtts(topo: Topology, count: int = 400, interval_s: float = 0.005) -> list[float]:
    argv = ["ping", "-n", "-c", str(count), "-i", str(interval_s), "-W", "3", topo.edge_addr]
    done = topo.run("ue", _realtime(argv), timeout=count * interval_s + 30)
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", done.stdout)]


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)

    return {"count": len(ordered), "min": round(ordered[0], 3), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99),
            "max": round(ordered[-1], 3)}


@pytest.mark.root
def test_host_rtt_baseline(benchmark: Any) -> None:
    benchmark.group = "netem-link-latency"
    with Topology("ideal", backend="kernel") as topo:
        rtts: list[float] = []
        benchmark.pedantic(lambda: rtts.extend(_rtts(topo)), rounds=1, iterations=1)
    benchmark.extra_info["rtt_ms"] = _percentiles(rtts)


LATENCY_VARIANTS = {
    "default": {},
    "no-kernel-timestamps": {"kernel_timestamps": False},
    "no-spin": {"spin_us": 0},
    "normal-scheduling": {"realtime_priority": 0},
}
LATENCY_CASES = [
    pytest.param(0, "default", id="idle"),
    # under load: tests/integration/netem/test_link_traffic.py checks the RTT by default; the distribution here with --full
    pytest.param(144, "default", id="144mbit", marks=pytest.mark.slow),
    *[pytest.param(144, name, id=f"144mbit-{name}", marks=pytest.mark.slow) for name in list(LATENCY_VARIANTS)[1:]],
]


@pytest.mark.root
@pytest.mark.parametrize(("load_mbit", "variant"), LATENCY_CASES)
def test_added_latency_distribution(benchmark: Any, load_mbit: int, variant: str) -> None:
    benchmark.group = "netem-link-latency"
    delay = DirectionProfile(delay_ms=10.0)
    link_profile = LinkProfile("delay-10ms", "bench", "tests/bench/test_link_bench.py", delay, delay)
    options = ForwarderOptions(**LATENCY_VARIANTS[variant])
    with Topology(link_profile, backend="userspace", link_options=options) as topo:
        load = None
        if load_mbit:
            topo.popen("edge", ["iperf3", "-s", "-1", "-p", "5514"], stdout=subprocess.DEVNULL)
            _wait_listening(topo, 5514)
            load = topo.popen("ue", _realtime(["timeout", "30", "iperf3", "-c", topo.edge_addr, "-p", "5514",
                                               "-u", "-b", f"{load_mbit}M", "-l", "1400", "-t", "5"]),
                              stdout=subprocess.DEVNULL)
            time.sleep(0.8)
        rtts: list[float] = []
        benchmark.pedantic(lambda: rtts.extend(_rtts(topo)), rounds=1, iterations=1)
        stats = topo.stats()["link"]
        if load is not None:
            load.wait(30)
    added = [rtt - 20.0 for rtt in rtts]
    benchmark.extra_info["added_rtt_ms"] = _percentiles(added)
    benchmark.extra_info["forwarder_late_ms"] = {d: stats[d]["late_ms"] for d in ("uplink", "downlink")}
    assert len(rtts) == 400 and min(added) >= 0.0


FRAMES = [bytes(1514)] * 10_000


def _through_pipeline() -> int:
    pipe = DirectionPipeline("uplink", LinkProfile.load("5g-embb").uplink, 0)
    sent = 0
    for index, frame in enumerate(FRAMES):
        now = index * 250_000  # 48 Mbit/s offered into the 50 Mbit/s uplink
        pipe.push(frame, now)
        sent += len(pipe.pop_due(now))
    return sent + len(pipe.pop_due(10**13))


def _through_deque() -> int:
    fifo: deque[bytes] = deque()
    sent = 0
    for frame in FRAMES:
        fifo.append(frame)
        fifo.popleft()
        sent += 1
    return sent


def test_pipeline_cost_baseline_deque(benchmark: Any) -> None:
    benchmark.group = "netem-link-pipeline"
    assert benchmark(_through_deque) == len(FRAMES)
    RESULTS["deque"] = _median(benchmark) or 0.0


def test_pipeline_cost_per_frame(benchmark: Any) -> None:
    benchmark.group = "netem-link-pipeline"
    sent = benchmark(_through_pipeline)
    assert 0.99 * len(FRAMES) <= sent <= len(FRAMES)  # 1e-4 loss: a frame or two
    median = _median(benchmark)
    if median is not None:
        benchmark.extra_info["us_per_frame"] = round(median / len(FRAMES) * 1e6, 2)
        if RESULTS.get("deque"):
            benchmark.extra_info["ratio_to_deque"] = round(median / RESULTS["deque"], 1)
