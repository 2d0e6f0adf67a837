"""The scenario timeline PNG (matplotlib, Agg): three panels over the same time axis (seconds after the timeline
started, CLOCK_MONOTONIC like the records):

1. uplink capacity the link was set to (steps, trace replay, outages as 0 and shaded), with the adaptive
   policy's rate estimate after each inference;
2. the partition each inference ran (ordered by raw intermediate size), failed inferences marked;
3. end-to-end latency per inference (log scale); failed inferences at their wall time, marked.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from netem.profile import DirectionProfile
from splitbed.scenario.spec import Scenario
from splitbed.scenario.timeline import direction_capacity

DPI = 110
TRACE_BIN_MS = 100  # mahimahi opportunities are binned into this many ms to draw a rate


def capacity_series(scenario: Scenario, link_events: list[dict[str, Any]], end_s: float) -> list[tuple[float, float]]:
    """(t s, uplink Mbit/s) points of a step line; NaN where the uplink is unshaped."""
    by_key = {(e.step, e.kind): e for e in scenario.events}
    segments: list[tuple[float, DirectionProfile | None]] = [(0.0, scenario.base.uplink)]
    for applied in link_events:
        if applied.get("error"):
            continue
        event = by_key.get((applied["step"], applied["kind"]))
        if event is None or event.kind == "input_size":  # a workload change: the link stays as it was
            continue
        segments.append((applied["applied_s"], None if event.kind == "outage_start" else event.profile.uplink))
    points: list[tuple[float, float]] = []
    for (start, direction), (stop, _) in zip(segments, segments[1:] + [(end_s, None)], strict=True):
        if stop <= start and stop < end_s:
            continue
        if direction is None:
            points += [(start, 0.0), (stop, 0.0)]
        elif direction.trace is not None:
            points += _trace_points(direction, start, max(stop, start))
        else:
            capacity = direction_capacity(direction)
            value = float(capacity) if isinstance(capacity, (int, float)) else math.nan
            points += [(start, value), (stop, value)]
    return points


def _trace_points(direction: DirectionProfile, start: float, stop: float) -> list[tuple[float, float]]:
    from netem.trace import MahimahiTrace, load

    assert direction.trace is not None
    trace = load(direction.trace.path, direction.trace.kind)  # the link restarts a trace at each change
    if isinstance(trace, MahimahiTrace):
        period = trace.period_ms
        bins = [0] * max(1, math.ceil(period / TRACE_BIN_MS))
        for ms in trace.opportunities_ms:
            bins[min(ms // TRACE_BIN_MS, len(bins) - 1)] += 1
        rates = [n * 1500 * 8 / (TRACE_BIN_MS / 1e3) / 1e6 for n in bins]
        interval_s = TRACE_BIN_MS / 1e3
    else:
        rates, interval_s = list(trace.mbit), trace.interval_ms / 1e3
    points = []
    t, i = start, 0
    while t < stop and i < 100_000:
        value = rates[i % len(rates)]
        points += [(t, value), (min(t + interval_s, stop), value)]
        t += interval_s
        i += 1
    return points


def timeline_png(scenario: Scenario, rows: list[dict[str, Any]], link_events: list[dict[str, Any]],
                 path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("record_type") in ("inference", "job_error")]
    end_s = max([r["scenario"]["t_end_s"] for r in done] + [e["applied_s"] for e in link_events] + [1.0])
    fig, (cap_ax, part_ax, lat_ax) = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True,
                                                  gridspec_kw={"height_ratios": [1.1, 1.2, 1.2]})
    fig.suptitle(f"scenario {scenario.name}: {scenario.workload.model}, base link {scenario.base.name}")

    points = capacity_series(scenario, link_events, end_s)
    cap_ax.plot([p[0] for p in points], [p[1] for p in points], color="#1f77b4", lw=1.6, label="uplink capacity set")
    estimates = [(r["scenario"]["t_end_s"], (r.get("adaptive") or {}).get("rate_estimate_mbit")) for r in done]
    estimates = [(t, v) for t, v in estimates if isinstance(v, (int, float))]
    if estimates:
        cap_ax.plot([t for t, _ in estimates], [v for _, v in estimates], "o", ms=3.5, color="#ff7f0e",
                    label="policy's rate estimate (EWMA)")
    cap_ax.set_ylabel("Mbit/s")
    cap_ax.set_yscale("symlog", linthresh=1.0)
    cap_ax.legend(loc="upper right", fontsize=8)

    ok = [r for r in done if r.get("status") == "ok"]
    failed = [r for r in done if r.get("status") != "ok"]
    sizes: dict[str, int] = {}
    for row in ok:
        sizes[row["partition_name"]] = int(row.get("raw_intermediate_bytes") or 0)
    order = sorted(sizes, key=lambda name: (sizes[name], name))
    y_of = {name: i for i, name in enumerate(order)}
    part_ax.plot([r["scenario"]["t_start_s"] for r in ok], [y_of[r["partition_name"]] for r in ok], "o-",
                 ms=4, lw=0.6, color="#2ca02c", drawstyle="steps-post", label="partition run")
    if failed:
        part_ax.plot([r["scenario"]["t_start_s"] for r in failed], [-0.8] * len(failed), "x", color="#d62728",
                     ms=7, label="failed inference")
    part_ax.set_yticks(range(len(order)))
    part_ax.set_yticklabels([f"{n} ({sizes[n] / 1e3:,.0f} kB)" for n in order], fontsize=8)
    part_ax.set_ylim(-1.3, max(len(order) - 0.5, 0.5))
    part_ax.set_ylabel("partition (raw size)")
    part_ax.legend(loc="upper right", fontsize=8)

    lat_ax.plot([r["scenario"]["t_start_s"] for r in ok], [r["e2e_latency_ms"] for r in ok], "o", ms=3.5,
                color="#9467bd", label="end-to-end latency")
    if failed:
        lat_ax.plot([r["scenario"]["t_start_s"] for r in failed],
                    [(r["scenario"]["end_ns"] - r["scenario"]["start_ns"]) / 1e6 for r in failed], "x",
                    color="#d62728", ms=7, label="failed (time until the error)")
    lat_ax.set_yscale("log")
    lat_ax.set_ylabel("ms")
    lat_ax.set_xlabel("time since the timeline started (s)")
    lat_ax.legend(loc="upper right", fontsize=8)

    outage_start = None
    for event in link_events:
        for ax in (cap_ax, part_ax, lat_ax):
            ax.axvline(event["applied_s"], color="#7f7f7f", ls=":", lw=0.9)
        if event["kind"] == "outage_start":
            outage_start = event["applied_s"]
        elif event["kind"] == "outage_end" and outage_start is not None:
            for ax in (cap_ax, part_ax, lat_ax):
                ax.axvspan(outage_start, event["applied_s"], color="#d62728", alpha=0.12, lw=0)
            outage_start = None
    for event in link_events:
        cap_ax.annotate(event["label"], (event["applied_s"], 1.0), xycoords=("data", "axes fraction"),
                        fontsize=7, rotation=90, va="top", ha="right", color="#555555")
    for ax in (cap_ax, part_ax, lat_ax):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path
