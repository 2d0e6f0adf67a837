"""Per-window CPU, memory and energy figures of the calling process, measured for real."""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

import numpy as np
import pytest

from splitbed.host import cgroup
from splitbed.nodes.resources import (
    PowerFigure,
    RaplCounters,
    ResourceMeter,
    host_info,
    load_power_figure,
    rapl_delta_mj,
    read_rapl,
)

POWER = PowerFigure(4.0, "test", "test figure")


def _burn_cpu(seconds: float) -> None:
    start = time.process_time()
    x = 0
    while time.process_time() - start < seconds:
        x += 1


def test_cpu_time_of_a_busy_window() -> None:
    meter = ResourceMeter(POWER)
    window = meter.start()
    _burn_cpu(0.2)
    figures = meter.stop(window)
    assert figures["cpu_time_ms"] >= 200
    # the process's CPU time counts every thread (a sampler or pool thread left by an earlier test may add to the
    # burner's), but no process can use more than its usable cores for the wall time
    assert figures["cpu_time_ms"] <= figures["wall_ms"] * figures["usable_cores"] * 1.05 + 5
    assert 0 < figures["cpu_utilisation_pct"] <= 100 * figures["usable_cores"] + 5
    assert figures["cpu_utilisation_of_host_pct"] == pytest.approx(
        figures["cpu_utilisation_pct"] / figures["usable_cores"])
    # the cgroup's CPU quota, when there is one, bounds what the process may use more tightly than its affinity
    assert figures["cpu_limit_cores"] == cgroup.cpu_limit_cores()
    assert figures["cpu_utilisation_of_limit_pct"] == pytest.approx(
        figures["cpu_utilisation_pct"] / min(figures["usable_cores"], figures["cpu_limit_cores"] or 1e9))
    assert figures["cpu_throttled_ms"] is None or figures["cpu_throttled_ms"] >= 0
    assert figures["energy_estimate_mj"] == pytest.approx(figures["cpu_time_ms"] * 4.0)
    assert "ESTIMATE" in figures["energy_estimate_method"]
    # the host's counters: every CPU's time over the window (10 ms ticks), of which some may have been stolen
    cpus = os.cpu_count() or 1
    assert abs(figures["host_cpu_ms"] - figures["wall_ms"] * cpus) <= 20 * cpus + 0.1 * figures["wall_ms"] * cpus
    assert 0 <= figures["host_cpu_stolen_ms"] <= figures["host_cpu_ms"]
    assert figures["host_cpu_wait_ms"] is None or figures["host_cpu_wait_ms"] >= 0


def test_idle_window_uses_little_cpu() -> None:
    meter = ResourceMeter(POWER)
    window = meter.start()
    time.sleep(0.3)
    figures = meter.stop(window)
    assert figures["wall_ms"] >= 300
    assert figures["cpu_utilisation_pct"] < 50


def _fresh_resident(size: int) -> mmap.mmap:
    """`size` bytes of anonymous memory that become resident now: an mmap of its own, off transparent huge pages,
    every page written. (A NumPy array may reuse memory the allocator kept resident from earlier work in the same
    process, e.g. TensorFlow's: then nothing new becomes resident and no peak rises.)"""
    block = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        block.madvise(mmap.MADV_NOHUGEPAGE)
    np.frombuffer(block, dtype=np.uint8)[:] = 1
    return block


@pytest.mark.parametrize("method", ["vmhwm-reset", "sampler"])
def test_peak_rss_sees_a_freed_allocation(method: str) -> None:
    meter = ResourceMeter(POWER, peak_method=method)
    window = meter.start()
    block = _fresh_resident(64 << 20)
    time.sleep(0.05)  # let the sampler see it
    block.close()
    figures = meter.stop(window)
    assert figures["peak_rss_increase_bytes"] >= 60 << 20
    assert figures["peak_rss_bytes"] >= figures["rss_start_bytes"] + (60 << 20)
    assert figures["peak_rss_method"].startswith(method)


def test_windows_do_not_inherit_an_earlier_peak() -> None:
    meter = ResourceMeter(POWER, peak_method="vmhwm-reset")
    block = np.ones(64 << 20, dtype=np.uint8)
    del block
    figures = meter.stop(meter.start())
    assert figures["peak_rss_increase_bytes"] < 16 << 20


def _zone(root: Path, name: str, energy: int, max_range: int) -> None:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")


def test_rapl_reads_package_zones_and_handles_wrap(tmp_path: Path) -> None:
    _zone(tmp_path, "intel-rapl:0", 1_000_000, 10_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 5, 10_000_000)  # a sub-zone inside package 0: must not be added
    _zone(tmp_path, "intel-rapl:1", 9_999_000, 10_000_000)
    start = read_rapl(tmp_path)
    assert len(start.counters_uj) == 2
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("1500000\n")
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("1000\n")  # wrapped
    mj, reason = rapl_delta_mj(start, read_rapl(tmp_path))
    assert mj == pytest.approx((500_000 + 2_000) / 1000)
    assert "whole package" in reason


def test_rapl_absent_gives_null_and_reason(tmp_path: Path) -> None:
    reading = read_rapl(tmp_path / "nope")
    assert rapl_delta_mj(reading, reading) == (None, reading.reason)
    assert "does not exist" in reading.reason


def test_the_meter_looks_for_rapl_zones_once(tmp_path: Path) -> None:
    """The zones found by the first probe are re-read at every edge (kept open); none found: the reason, and
    nothing read however the directory changes afterwards (a driver does not appear while a node runs)."""
    _zone(tmp_path, "intel-rapl:0", 1_000_000, 10_000_000)
    counters = RaplCounters(tmp_path)
    start = counters.read()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("1250000\n")
    assert rapl_delta_mj(start, counters.read())[0] == pytest.approx(250.0)
    absent = RaplCounters(tmp_path / "later")
    _zone(tmp_path / "later", "intel-rapl:0", 5, 10)
    reading = absent.read()
    assert reading.counters_uj == {} and "does not exist" in reading.reason


def test_a_zone_that_gives_no_number_is_named_once(tmp_path: Path) -> None:
    """read_rapl and the meter's counters share the zone handling: a zone whose counter is not a number gives no
    energy and a reason naming its file, and the meter's counters keep that reason (they read nothing later)."""
    _zone(tmp_path, "intel-rapl:0", 1_000_000, 10_000_000)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("n/a\n")
    one_shot, kept = read_rapl(tmp_path), RaplCounters(tmp_path)
    for reading in (one_shot, kept.read()):
        assert reading.counters_uj == {} and "energy_uj gave b'n/a" in reading.reason
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("5\n")
    assert read_rapl(tmp_path).counters_uj == {tmp_path / "intel-rapl:0": 5}
    assert kept.read().counters_uj == {}


def test_one_parser_per_file_reads_the_live_files() -> None:
    """statm's resident pages and status's VmRSS are one kernel counter (two reads of a live process: close, not
    equal); a text without the field gives None, which the fast path turns into the general path."""
    from splitbed.nodes.resources import _statm_rss, _status_bytes

    statm = _statm_rss(Path("/proc/self/statm").read_bytes())
    rss = _status_bytes(Path("/proc/self/status").read_bytes(), b"VmRSS:")
    assert statm is not None and rss is not None and abs(statm - rss) < 16 << 20
    assert _statm_rss(b"12") is None and _statm_rss(b"") is None and _statm_rss(None) is None
    assert _status_bytes(b"VmRSS:\t  10 kB\n", b"VmRSS:") == 10240 and _status_bytes(b"Name: x\n", b"VmHWM:") is None


def test_counters_are_read_from_cgroup_and_status_texts() -> None:
    from splitbed.nodes.resources import _number_after

    v1 = b"nr_periods 10\nnr_throttled 2\nthrottled_time 123456\nnr_bursts 0\nburst_time 0\n"
    v2 = b"usage_usec 9\nnr_periods 10\nnr_throttled 2\nthrottled_usec 7\n"
    assert cgroup.parse_cpu_stat(v1.decode())["throttled_ns"] == _number_after(v1, b"\nthrottled_time ") == 123456
    assert cgroup.parse_cpu_stat(v2.decode())["throttled_ns"] == 1000 * _number_after(v2, b"\nthrottled_usec ")
    status = Path("/proc/self/status").read_bytes()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith(b"VmHWM:"))
    assert _number_after(status, b"VmHWM:") == hwm
    assert _number_after(b"VmHWM:\n", b"VmHWM:") is None and _number_after(None, b"x") is None


def test_power_figure_comes_from_the_data_file() -> None:
    figure = load_power_figure()
    assert 0 < figure.watts_per_busy_core < 50 and figure.source


def test_host_info() -> None:
    info = host_info()
    assert info["cpu_count"] >= 1 and 1 <= info["usable_cores"] <= info["cpu_count"]
    assert info["memory_total_bytes"] > 0 and info["cpu_model"]


def test_a_window_counts_its_garbage_collections_and_page_faults() -> None:
    """The causes the sweep's outlier flags name: a GC pause and a page-fault storm, measured for real."""
    import gc
    import mmap

    meter = ResourceMeter(POWER)
    quiet = meter.stop(meter.start())
    window = meter.start()
    junk = [[i] for i in range(200_000)]
    del junk
    gc.collect()
    # 64 MiB of anonymous memory kept off transparent huge pages, one byte written per 4 kB page: 16k first-touch
    # faults on any kernel (a machine with THP set to "always" gave a numpy buffer 2 MiB pages: 1,266 faults)
    touched = mmap.mmap(-1, 64 * 1024 * 1024)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        touched.madvise(mmap.MADV_NOHUGEPAGE)
    view = np.frombuffer(touched, dtype=np.uint8)
    view[:: mmap.PAGESIZE] = 1
    stormy = meter.stop(window)
    del view
    touched.close()
    assert stormy["gc_collections"] >= 1 and stormy["gc_ms"] > 0
    assert stormy["minor_faults"] + stormy["major_faults"] >= 2000
    assert quiet["gc_collections"] == 0 and quiet["minor_faults"] < 1000


def test_the_edges_fast_path_and_the_general_path_give_the_same_figures() -> None:
    """Where every file is open the edges read the descriptors themselves; the general path (no descriptors, or
    anything unexpected in them) gives the same figures, both catching a 64 MiB peak."""
    fast, general = ResourceMeter(POWER), ResourceMeter(POWER)
    if fast.files().fds is None:
        pytest.skip("this platform lacks a file the fast path reads (clear_refs, statm, cpu.stat, PSI)")
    general.files().fds = None
    figures = []
    for meter in (fast, general):
        window = meter.start()
        block = _fresh_resident(64 << 20)
        block.close()
        figures.append(meter.stop(window))
    assert figures[0].keys() == figures[1].keys()
    for got in figures:
        assert got["peak_rss_increase_bytes"] >= 60 << 20 and got["peak_rss_method"].startswith("vmhwm-reset")
        assert got["minor_faults"] >= 10_000 and got["host_cpu_ms"] is not None
        assert (got["cpu_throttled_ms"] is None) == (cgroup.cpu_throttling(fast.cpu_stat) is None)
    broken = ResourceMeter(POWER)
    broken.files().fds = (-1,) * 6  # a read that fails: the general path takes over at both edges
    assert broken.stop(broken.start())["peak_rss_method"].startswith("vmhwm-reset")


def test_a_window_ended_before_its_counters_are_read() -> None:
    """end() takes the clocks, finish() the counters later (the remote sends a split RESULT's leading unit in
    between): wall and CPU time stop at end(), what the counters saw after it counts (a 64 MiB peak there) and the
    figures say by how much later they were read."""
    meter = ResourceMeter(POWER)
    window = meter.start()
    ended = meter.end(window)
    _burn_cpu(0.05)
    block = _fresh_resident(64 << 20)
    block.close()
    figures = meter.finish(window, ended)
    assert figures["wall_ms"] == ended.wall_ns / 1e6 and figures["cpu_time_ms"] == ended.cpu_ns / 1e6
    assert figures["counters_late_ms"] >= 50  # 50 ms of CPU burnt after the end: at least that much wall time
    assert figures["peak_rss_increase_bytes"] >= 60 << 20
    assert meter.stop(meter.start())["counters_late_ms"] >= 0  # at once: the clocks, then the counters
