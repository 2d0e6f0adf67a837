"""Kernel backend planning (no root): which qdiscs a profile becomes, what is refused, and the netem tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from netem.disttables import NETEM_DIST_SCALE, distribution_table, normal_table, pareto_table
from netem.errors import UnsupportedProfileError
from netem.kernel import kernel_problems, plan_direction, required_kinds
from netem.kernel.netem_qdisc import U32_MAX, netem_parameters, probability_to_u32
from netem.profile import DirectionProfile, GilbertElliott, LinkProfile, RandomLoss, TraceRef

IPROUTE2_DIST_DIRS = [Path("/usr/lib/x86_64-linux-gnu/tc"), Path("/usr/lib/tc"), Path("/usr/lib64/tc"),
                      Path("/usr/share/tc")]


def kinds(direction: DirectionProfile) -> list[str]:
    return [spec.kind for spec in plan_direction(direction)]


def test_chain_shapes() -> None:
    assert kinds(DirectionProfile()) == []
    assert kinds(DirectionProfile(rate_mbit=10)) == ["tbf", "pfifo"]
    assert kinds(DirectionProfile(rate_mbit=10, queue_bytes=50_000)) == ["tbf"]
    assert kinds(DirectionProfile(delay_ms=5)) == ["netem"]
    assert kinds(DirectionProfile(loss=RandomLoss(0.0))) == []
    assert kinds(DirectionProfile(delay_ms=5, rate_mbit=50, queue_packets=100)) == ["netem", "tbf", "pfifo"]


def test_chain_parents_and_parameters() -> None:
    netem, tbf, fifo = plan_direction(DirectionProfile(delay_ms=5, rate_mbit=144, queue_packets=100))
    assert netem.parent == 0xFFFFFFFF and tbf.parent == netem.handle | 1 and fifo.parent == tbf.handle | 1
    assert tbf.params["rate_bytes_per_s"] == 18_000_000
    assert tbf.params["burst_bytes"] == 18_000  # 1 ms at 144 Mbit/s
    assert fifo.params["limit_packets"] == 100
    (only_tbf,) = plan_direction(DirectionProfile(rate_mbit=1, queue_bytes=20_000))
    assert only_tbf.parent == 0xFFFFFFFF and only_tbf.params["limit_bytes"] == 20_000
    assert only_tbf.params["burst_bytes"] == 2 * 1514  # never below two full frames


def test_refusals_are_specific() -> None:
    traced = DirectionProfile(trace=TraceRef("/x.tput", "throughput"))
    assert "trace" in kernel_problems(traced)[0]
    assert "droptail" in kernel_problems(DirectionProfile(queue_discipline="codel"))[0]
    assert "not both" in kernel_problems(DirectionProfile(queue_packets=10, queue_bytes=20_000))[0]
    with pytest.raises(UnsupportedProfileError, match="use --backend userspace"):
        plan_direction(traced)


def test_builtin_profiles_kernel_needs() -> None:
    assert required_kinds(LinkProfile.load("ideal")) == set()
    assert required_kinds(LinkProfile.load("5g-embb")) == {"netem", "tbf"}
    assert required_kinds(LinkProfile.load("5g-split-ai")) == {"netem", "tbf"}
    with pytest.raises(UnsupportedProfileError):
        required_kinds(LinkProfile.load("5g-mmwave-driving"))


def test_netem_parameters_mapping() -> None:
    params = netem_parameters(DirectionProfile(delay_ms=6.95, jitter_ms=1, jitter_distribution="normal",
                                               loss=GilbertElliott(p=0.01, r=0.3, h=0.001, k=0.3), seed=42))
    assert params["delay_ns"] == 6_950_000 and params["jitter_ns"] == 1_000_000
    assert params["distribution"] == "normal" and params["seed"] == 42 and params["loss_u32"] == 0
    ge = params["gemodel"]
    assert ge["p"] == probability_to_u32(0.01) and ge["r"] == probability_to_u32(0.3)
    assert ge["k1"] == probability_to_u32(0.001)  # kernel k1 = loss in Good = our h
    assert ge["h"] == U32_MAX - probability_to_u32(0.3)  # kernel h = delivery in Bad = 1 - our k
    uniform = netem_parameters(DirectionProfile(delay_ms=1, jitter_ms=1))
    assert uniform["distribution"] is None  # the kernel's own uniform draw
    assert netem_parameters(DirectionProfile(loss=RandomLoss(1.0)))["loss_u32"] == U32_MAX


def test_distribution_tables_shape() -> None:
    normal, pareto = normal_table(), pareto_table()
    assert len(normal) == len(pareto) == 4096
    assert list(normal) == sorted(normal) and list(pareto) == sorted(pareto)
    assert abs(sum(normal) / len(normal)) < 0.01 * NETEM_DIST_SCALE  # mean 0
    assert abs(normal[len(normal) * 841 // 1000] - NETEM_DIST_SCALE) < 0.01 * NETEM_DIST_SCALE  # +1 sigma at 84.1%
    with pytest.raises(ValueError):
        distribution_table("cauchy")


@pytest.mark.parametrize("name", ["normal", "pareto"])
def test_distribution_tables_equal_iproute2_files(name: str) -> None:
    found = [d / f"{name}.dist" for d in IPROUTE2_DIST_DIRS if (d / f"{name}.dist").is_file()]
    if not found:
        pytest.skip(f"iproute2's {name}.dist is not installed here")
    values = [int(v) for line in found[0].read_text().splitlines() if not line.startswith("#") for v in line.split()]
    assert list(distribution_table(name)) == values
