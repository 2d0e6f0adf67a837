"""netem.hostload: the hypervisor's steal and the CPU wait between two readings, from /proc files (real ones here,
and written ones for the shapes a host may give)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from netem.hostload import PROC_STAT, HostCpuCounters, parse_counters, raw_counters, read_counters

STAT = "cpu  {user} 0 {system} {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
PSI = "some avg10=0.00 avg60=0.00 avg300=0.00 total={total}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"


def write(tmp_path: Path, user: int, idle: int, steal: int, wait_us: int) -> tuple[Path, Path]:
    stat, psi = tmp_path / "stat", tmp_path / "psi"
    stat.write_text(STAT.format(user=user, system=0, idle=idle, steal=steal))
    psi.write_text(PSI.format(total=wait_us))
    return stat, psi


def test_stolen_share_is_steal_over_all_cpu_time_in_between(tmp_path: Path) -> None:
    before = read_counters(*write(tmp_path, user=100, idle=800, steal=100, wait_us=5_000))
    after = read_counters(*write(tmp_path, user=150, idle=1000, steal=150, wait_us=17_500))
    window = after.since(before)
    assert window.stolen_share == pytest.approx(50 / 300)
    assert window.cpu_wait_ms == pytest.approx(12.5)
    assert window.stolen_above(0.05) and not window.stolen_above(0.2)
    assert window.describe() == "16.7% of the CPU stolen, tasks waited 12 ms for a CPU"


def test_no_time_passed_is_no_steal(tmp_path: Path) -> None:
    same = read_counters(*write(tmp_path, user=1, idle=2, steal=0, wait_us=0))
    assert same.since(same).stolen_share == 0.0


def test_unreadable_sources_are_unknown_not_zero(tmp_path: Path) -> None:
    missing = read_counters(tmp_path / "no-stat", tmp_path / "no-psi")
    assert missing == HostCpuCounters(None, None, None)
    window = missing.since(missing)
    assert window.stolen_share is None and window.cpu_wait_ms is None
    assert not window.stolen_above(0.0)  # unknown is never reported as over a limit
    assert window.describe() == "steal unknown"
    (tmp_path / "short").write_text("cpu  1 2 3 4\n")  # an old kernel's line without a steal field
    assert read_counters(tmp_path / "short", tmp_path / "no-psi").steal_jiffies is None


@pytest.mark.skipif(not PROC_STAT.exists(), reason="no /proc/stat")
def test_this_hosts_counters_move_forward() -> None:
    before = read_counters()
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline:  # bounded busy loop so the jiffies advance
        pass
    window = read_counters().since(before)
    assert window.stolen_share is not None and 0.0 <= window.stolen_share <= 1.0
    assert window.cpu_wait_ms is None or window.cpu_wait_ms >= 0.0


def test_raw_bytes_read_as_their_text() -> None:
    """A meter reads the kept-open files as bytes; the counters are those of the text."""
    stat = STAT.format(user=7, system=3, idle=90, steal=4)
    psi = PSI.format(total=123_456)
    assert raw_counters(stat.encode(), psi.encode()) == raw_counters(stat, psi) == (4, 104, 123_456)
    assert parse_counters(stat.encode(), None) == HostCpuCounters(4, 104, None)
    if PROC_STAT.exists():
        assert raw_counters(PROC_STAT.read_bytes(), None)[1] is not None
