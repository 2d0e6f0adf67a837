"""The latency-vs-rate figure is drawn only across profiles that differ in their uplink rate alone; otherwise the
report says why (built-in profiles differ in delay, loss and queue as well)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netem.profile import LinkProfile, builtin_names
from splitbed.report.budgets import get_budget
from splitbed.report.plots import rate_families, rate_plots
from splitbed.sweep.summary import summarise


def _profile(name: str, rate: float | None, delay: float = 1.0, loss: float | None = None) -> dict[str, Any]:
    uplink: dict[str, Any] = {"rate_mbit": rate, "delay_ms": delay, "queue_packets": 1000, "seed": hash(name) % 7}
    if loss is not None:
        uplink["loss"] = {"model": "random", "p": loss}
    return {"name": name, "description": f"{name} link", "source": "a test", "uplink": uplink,
            "downlink": {"delay_ms": delay}}


def test_families_are_profiles_that_differ_in_the_uplink_rate_alone() -> None:
    profiles = {n: _profile(n, r) for n, r in (("r10", 10.0), ("r50", 50.0), ("r200", 200.0))}
    profiles["r50-lossy"] = _profile("r50-lossy", 50.0, loss=0.01)
    profiles["r20-lossy"] = _profile("r20-lossy", 20.0, loss=0.01)
    profiles["far"] = _profile("far", 50.0, delay=20.0)
    profiles["trace"] = _profile("trace", None)
    families, reason = rate_families(profiles)
    assert reason is None and sorted(families) == [["r10", "r50", "r200"], ["r20-lossy", "r50-lossy"]]


def test_no_family_says_why() -> None:
    assert rate_families({"only": _profile("only", 144.0)})[1] == (
        "only one uplink rate was measured (only, 144 Mbit/s): a line needs profiles that differ in their uplink "
        "rate alone")
    builtins = {n: LinkProfile.load(n).to_dict() for n in builtin_names()}
    families, reason = rate_families(builtins)
    assert families == [] and reason is not None and "differ in more than that rate" in reason
    assert "no profile measured has a fixed uplink rate (trace: unshaped or trace-driven)" in \
        str(rate_families({"trace": _profile("trace", None)})[1])


def _record(profile: dict[str, Any], partition: str, pid: int, e2e: float) -> dict[str, Any]:
    return {"record_type": "inference", "status": "ok", "model": "m", "partition_name": partition,
            "partition_id": pid, "encoding": "tlv", "compression_profile": "none", "e2e_latency_ms": e2e,
            "delivery_ms": e2e / 2, "tags": {"point": f"{profile['name']}|m|{partition}|tlv|none|i|w|b|r"},
            "link": {"profile": profile}}


def test_one_figure_per_family_with_one_series_per_partition(tmp_path: Path) -> None:
    profiles = {n: _profile(n, r) for n, r in (("r10", 10.0), ("r50", 50.0))}
    profiles["far"] = _profile("far", 50.0, delay=20.0)
    records = [_record(p, part, pid, 100.0 / (p["uplink"]["rate_mbit"]) + pid) for p in profiles.values()
               for part, pid in (("a", 1), ("b", 2)) for _ in range(3)]
    plots, notes = rate_plots(summarise(records), get_budget(), tmp_path, profiles)
    assert notes == [] and len(plots) == 1 and "(r10, r50)" in plots[0].caption
    assert (tmp_path / plots[0].path).is_file()
    svg = (tmp_path / plots[0].svg).read_text()  # text kept as text: the series and axes can be read back
    assert svg.count(">a</text>") == svg.count(">b</text>") == 1  # the legend: one series per partition
    assert "configured uplink rate of the link profile" in svg and "budget: UL latency 15 ms" in svg
