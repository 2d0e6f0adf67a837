"""NodeLimits: sizes and shares parsed once, with a specific error for each kind of bad value."""

from __future__ import annotations

import pytest

from splitbed.runtime import LimitError, NodeLimits
from splitbed.runtime.limits import parse_memory


@pytest.mark.parametrize(("text", "size"), [("512m", 512 << 20), ("2g", 2 << 30), ("1.5GiB", 3 << 29),
                                            ("64MB", 64 << 20), (" 128 m ", 128 << 20), (1 << 30, 1 << 30)])
def test_memory_sizes_use_binary_units(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize(("value", "message"), [("2gb!", "not a size"), ("lots", "not a size"), ("-1g", "not a size"),
                                                ("16m", "below the minimum"), (True, "not True")])
def test_bad_memory_sizes_say_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises(LimitError, match=message):
        parse_memory(value)  # type: ignore[arg-type]


def test_cpus_are_bounded_like_docker_does() -> None:
    assert NodeLimits.make(cpus=0.5, host_cpus=2).cpus == 0.5
    for bad in (0, 0.001, 2.5, -1):
        with pytest.raises(LimitError, match="out of range: this host allows 0.01 to 2"):
            NodeLimits.make(cpus=bad, host_cpus=2)
    with pytest.raises(LimitError, match="must be a number"):
        NodeLimits.make(cpus="half")  # type: ignore[arg-type]


def test_cpuset_and_pids_and_period_checks() -> None:
    assert NodeLimits.make(cpuset="0-1", host_cpus=2).cpuset == "0-1"
    with pytest.raises(LimitError, match="names CPU 3"):
        NodeLimits.make(cpuset="0,3", host_cpus=2)
    with pytest.raises(LimitError, match="malformed"):
        NodeLimits.make(cpuset="0-", host_cpus=2)
    with pytest.raises(LimitError, match="pids limit"):
        NodeLimits.make(pids=4)
    with pytest.raises(LimitError, match="only makes sense with a cpus limit"):
        NodeLimits.make(cpu_period_us=10_000)
    with pytest.raises(LimitError, match="from 1000 to 1000000"):
        NodeLimits.make(cpus=0.5, cpu_period_us=500, host_cpus=2)
    with pytest.raises(LimitError, match="below the kernel's minimum"):
        NodeLimits.make(cpus=0.05, cpu_period_us=10_000, host_cpus=2)


def test_docker_settings_are_cfs_period_and_quota() -> None:
    limits = NodeLimits.make(cpus=0.5, memory="1g", host_cpus=2)
    config = limits.docker_host_config()
    assert (config["cpu_period"], config["cpu_quota"]) == (100_000, 50_000)
    assert config["mem_limit"] == config["memswap_limit"] == 1 << 30  # no swap beyond the cap
    assert "nano_cpus" not in config  # NanoCpus could not be updated on a running container
    fine = NodeLimits.make(cpus=0.25, cpu_period_us=10_000, host_cpus=2)
    assert fine.docker_update() == {"cpu_period": 10_000, "cpu_quota": 2_500}
    assert NodeLimits().docker_update() == {"cpu_period": 100_000, "cpu_quota": -1}
    assert NodeLimits().unlimited and not limits.unlimited
    assert limits.describe() == {"cpus": 0.5, "memory_bytes": 1 << 30, "cpuset": None, "pids": 1024,
                                 "cpu_period_us": None}
