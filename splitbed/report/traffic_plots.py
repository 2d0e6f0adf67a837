"""The report's figures drawn from individual records and from the sweep's captures (plots.py draws those made of
point summaries). One figure per (profile, model, carriage), PNG (300 dpi) and SVG:

- **latency CDF**: the empirical distribution of each partition's uplink delivery times, with the budget's UL
  latency as a vertical line and the 99 % level as a horizontal one, so the share within the budget and the
  distance to a "99 % within" KPI read off where each curve crosses them; and of the end-to-end latency beside it;
  under a paced workload also of the latency from capture (the frame's wait for the UE + end-to-end), with the
  frame deadline, dropped frames counted as never arriving;
- **uplink bitrate over time**: one representative stretch per point (three consecutive measured inferences
  around the middle one; the sweep stores it in captures/<point>/series-*.json), 1 ms bins, as the UE offered it
  and as the link delivered it at the edge, with the profile's configured uplink rate;
- **burst size histogram**: bytes on the wire per uplink burst, per partition, on a log axis, with the budget's
  payload (which counts application bytes; the wire adds ~4.6 % of Ethernet/IP/TCP headers at full frames).

Everything drawn is measured: times from the records, bytes and rates from the captures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from splitbed.report.budgets import Budget
from splitbed.report.plots import Plot, _pyplot, _save, _slug
from splitbed.sweep.figures import BY_KEY
from splitbed.sweep.plan import SINGLE_WORKLOAD
from splitbed.sweep.store import is_measurement
from splitbed.sweep.summary import PointSummary, record_key
from splitbed.workload import WorkloadError, parse

MAX_SERIES_BYTES = 16 << 20  # a series file is a few kB; anything near this is not ours


def _groups(summaries: Iterable[PointSummary]) -> dict[tuple[str, str, str], list[PointSummary]]:
    """Summaries per (profile, model, carriage), the profile named with its devices where several pairs ran."""
    items = list(summaries)
    several = len({(s.ue_device, s.edge_device) for s in items}) > 1
    groups: dict[tuple[str, str, str], list[PointSummary]] = {}
    for s in items:
        profile = f"{s.profile}; UE {s.ue_device}, edge {s.edge_device}" if several else s.profile
        groups.setdefault((profile, s.model, s.carriage), []).append(s)
    for members in groups.values():
        members.sort(key=lambda s: s.partition_id)
    return groups


def _by_point(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    points: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if is_measurement(record) and record.get("status") == "ok":
            points.setdefault(record_key(record), []).append(record)
    return points


def _colours(n: int) -> list[Any]:
    cmap = _pyplot().get_cmap("viridis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _plain_log_axis(axis: Any) -> None:
    """Ticks of a log axis as plain numbers (15, 20, 300,000), not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 10 else f"{value:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def _ecdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    return ordered, [(i + 1) / len(ordered) for i in range(len(ordered))]


CDF_PANELS = (("delivery_ms", "uplink delivery"), ("e2e_latency_ms", "end-to-end latency"))
FRAME_PANEL = ("frame_latency_ms", "latency from capture")  # paced workloads: wait for the UE + end-to-end


def _deadline_ms(records: Iterable[dict[str, Any]], summary: PointSummary) -> float | None:
    """The frame deadline a paced point's frames were held against (the records' `workload.deadline_ms`: the time
    between frames), else the workload's own."""
    for record in records:
        block = record.get("workload")
        value = block.get("deadline_ms") if isinstance(block, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    try:
        deadline = parse(summary.workload).deadline_s
    except WorkloadError:  # records from elsewhere with a spec this version does not read: no line
        return None
    return None if deadline is None else 1000.0 * deadline


def cdf_curve(records: Sequence[dict[str, Any]], summary: PointSummary,
              key: str) -> tuple[list[float], list[float], str] | None:
    """One partition's empirical CDF of figure `key` over its good records: (sorted values, share at or below each,
    legend label); None without values. For the latency from capture a dropped frame never arrives: it counts
    among the frames (summary.frames_dropped) but below no latency, so the shares end below 1."""
    values = [v for r in records if (v := BY_KEY[key].value(r)) is not None]
    if not values:
        return None
    xs, ys = _ecdf(values)
    if key != FRAME_PANEL[0]:
        return xs, ys, f"{summary.partition} (n={len(values)})"
    total = len(values) + summary.frames_dropped
    dropped = f", +{summary.frames_dropped} dropped" if summary.frames_dropped else ""
    return xs, [(i + 1) / total for i in range(len(xs))], f"{summary.partition} (n={len(values)}{dropped})"


def _line_inside(ax: Any, x: float) -> None:
    """Widen a log x axis so that a vertical line at `x` lies well inside it, whichever side of the data."""
    low, high = ax.get_xlim()
    ax.set_xlim(min(low, x / 1.3), max(high, x * 1.3))


def latency_cdfs(records: Iterable[dict[str, Any]], summaries: Iterable[PointSummary], budget: Budget,
                 out_dir: Path) -> list[Plot]:
    """Per (profile, model, carriage): the CDFs of uplink delivery (budget line) and end-to-end latency; for a
    paced workload (the carriage names it) a third panel, the latency from capture, with the frame deadline."""
    plt = _pyplot()
    points = _by_point(records)
    plots = []
    for (profile, model, carriage), members in _groups(summaries).items():
        paced = any(s.workload != SINGLE_WORKLOAD for s in members)
        panels = CDF_PANELS + ((FRAME_PANEL,) if paced else ())
        fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6))
        colours = _colours(len(members))
        drawn = False
        deadline = None
        for ax, (key, what) in zip(axes, panels, strict=True):
            frames = key == FRAME_PANEL[0]
            for summary, colour in zip(members, colours, strict=True):
                curve = cdf_curve(points.get(summary.key, []), summary, key)
                if curve is None:
                    continue
                xs, ys, label = curve
                if frames:
                    deadline = deadline or _deadline_ms(points.get(summary.key, []), summary)
                ax.step([xs[0]] + xs, [0.0] + ys, where="post", color=colour, linewidth=1.6, label=label)
                drawn = True
            ax.axhline(0.99, color="grey", linestyle=":", linewidth=1,
                       label="99 % of frames" if frames else "99 % of inferences")
            ax.set_xscale("log")
            if key == "delivery_ms" and budget.uplink_latency_ms is not None:
                ax.axvline(budget.uplink_latency_ms, color="red", linestyle="--", linewidth=1.4,
                           label=f"budget: UL latency {budget.uplink_latency_ms:g} ms")
                _line_inside(ax, budget.uplink_latency_ms)
            if frames and deadline is not None:
                ax.axvline(deadline, color="red", linestyle="--", linewidth=1.4,
                           label=f"frame deadline {deadline:g} ms (time between frames)")
                _line_inside(ax, deadline)
            _plain_log_axis(ax.xaxis)
            ax.tick_params(axis="x", which="minor", labelsize=7)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel(f"{what} (ms, log)" + (": wait for the UE + end-to-end" if frames else ""))
            ax.set_ylabel("share of frames at or below" if frames else "share of inferences at or below")
            # three panels leave no room for the group in each title: it goes above them
            ax.set_title(what if paced else f"{model} on {profile} ({carriage}): {what}")
            ax.grid(alpha=0.3, which="both")
        if not drawn:
            plt.close(fig)
            continue
        if paced:
            fig.suptitle(f"{model} on {profile} ({carriage})", fontsize=12)
            fig.tight_layout()
        axes[0].legend(fontsize=7, loc="lower right")
        if paced:
            axes[-1].legend(fontsize=7, loc="lower right")
        path = Path("plots") / f"cdf_{_slug(model, profile, carriage)}.png"
        _save(fig, out_dir / path)
        caption = ("Empirical CDF of each partition's measured inferences. Left: uplink delivery time with the "
                   f"budget's UL latency ({budget.title}) as the red line: where a curve crosses it is the "
                   "share of inferences within the budget; the dotted line is the 99 % a KPI such as '99 % "
                   f"within 15 ms' asks for. {'Middle' if paced else 'Right'}: end-to-end latency (preprocessing "
                   "to predictions), which the budget does not bound.")
        if paced:
            caption += (" Right: latency from capture (paced workload: the frame's wait for the UE plus its "
                        "end-to-end latency, measured; docs/METRICS.md, workload.frame_latency_ms) with the frame "
                        "deadline, the time between frames, as the red line (a frame later than that is late: the "
                        "next one is due); the UL latency budget bounds the delivery, not this. A dropped frame "
                        "never arrives: it counts among the frames but below no latency, so the curve of a point "
                        "that dropped frames stays below 1.")
        plots.append(Plot(f"Latency CDF per partition: {model}, {profile}, {carriage}", path, caption, "cdf"))
    return plots


def _series(results_dir: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    traffic = record.get("traffic")
    capture = traffic.get("capture") if isinstance(traffic, dict) else None
    relative = capture.get("series") if isinstance(capture, dict) else None
    if not isinstance(relative, str):
        return None
    path = (results_dir / relative).resolve()
    if not path.is_relative_to(results_dir.resolve()) or not path.is_file():
        return None
    if path.stat().st_size > MAX_SERIES_BYTES:
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("ue"), list):
        return None
    return loaded


def bitrate_plots(records: Iterable[dict[str, Any]], summaries: Iterable[PointSummary], results_dir: Path,
                  out_dir: Path) -> list[Plot]:
    plt = _pyplot()
    points = _by_point(records)
    plots = []
    for (profile, model, carriage), members in _groups(summaries).items():
        chosen = []
        for summary in members:
            series = next((s for r in points.get(summary.key, []) if (s := _series(results_dir, r))), None)
            if series is not None:
                chosen.append((summary, series))
        if not chosen:
            continue
        fig, axes = plt.subplots(len(chosen), 1, figsize=(11.0, 1.9 * len(chosen) + 0.8), squeeze=False)
        for ax, (summary, series) in zip(axes[:, 0], chosen, strict=True):
            width = float(series.get("bin_ms") or 1.0)
            scale = 8 / (width * 1e3)  # bytes per bin -> Mbit/s
            xs = [i * width for i in range(len(series["ue"]))]
            ax.plot(xs, [b * scale for b in series["ue"]], color="#1f77b4", linewidth=0.8,
                    label="UE side (offered to the link)")
            if isinstance(series.get("edge"), list):
                ax.plot(xs, [b * scale for b in series["edge"]], color="#d62728", linewidth=0.8, alpha=0.8,
                        label="edge side (delivered by the link)")
            if summary.uplink_rate_mbit is not None:
                ax.axhline(summary.uplink_rate_mbit, color="black", linestyle="--", linewidth=1,
                           label=f"configured uplink rate {summary.uplink_rate_mbit:g} Mbit/s")
            for item in series.get("inferences") or []:
                start = item.get("burst_start_ms") if isinstance(item, dict) else None
                if isinstance(start, (int, float)):
                    ax.axvline(start, color="grey", linestyle=":", linewidth=0.8)
            ax.set_title(f"{summary.partition}: {len(series.get('inferences') or [])} consecutive inferences "
                         f"({width:g} ms bins)", fontsize=9)
            ax.set_ylabel("Mbit/s")
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("time from the first burst's first frame (ms)")
        axes[0, 0].legend(fontsize=7, loc="upper right")
        fig.suptitle(f"{model} on {profile} ({carriage}): uplink bitrate over time", fontsize=11)
        fig.tight_layout()
        path = Path("plots") / f"bitrate_{_slug(model, profile, carriage)}.png"
        _save(fig, out_dir / path)
        plots.append(Plot(f"Uplink bitrate over time: {model}, {profile}, {carriage}", path,
                          "Bits on the wire per 1 ms bin over three consecutive measured inferences around the "
                          "middle one of each point (dotted: each burst's first frame), measured from the point's "
                          "captures: blue as the UE put them on its veth (before the emulated link on the userspace "
                          "backend, so it can exceed the link's rate while TCP fills the link's queue), red as the "
                          "link delivered them at the edge; dashed: the profile's configured uplink rate.",
                          "bitrate"))
    return plots


def burst_histograms(records: Iterable[dict[str, Any]], summaries: Iterable[PointSummary], budget: Budget,
                     out_dir: Path) -> list[Plot]:
    plt = _pyplot()
    points = _by_point(records)
    plots = []
    for (profile, model, carriage), members in _groups(summaries).items():
        samples = []
        for summary in members:
            values = [v for r in points.get(summary.key, []) if (v := BY_KEY["burst_wire_bytes"].value(r))]
            if values:
                samples.append((summary, values))
        if not samples:
            continue
        every = [v for _, values in samples for v in values]
        low, high = min(every), max(every)
        if budget.payload_bytes:
            low, high = min(low, budget.payload_bytes), max(high, budget.payload_bytes)
        edges = [10 ** (math.log10(low) - 0.05 + i * (math.log10(high) - math.log10(low) + 0.1) / 60)
                 for i in range(61)]
        fig, ax = plt.subplots(figsize=(10.0, 4.4))
        ax.hist([values for _, values in samples], bins=edges, stacked=True, color=_colours(len(samples)),
                label=[f"{s.partition} (n={len(values)})" for s, values in samples])
        if budget.payload_bytes:
            ax.axvline(budget.payload_bytes, color="red", linestyle="--", linewidth=1.4,
                       label=f"budget payload {budget.payload_bytes:,} B (application bytes)")
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
        ax.tick_params(axis="x", which="both", labelsize=7, labelrotation=30)
        ax.set_xlabel("uplink burst size on the wire (bytes, log: Ethernet frames of one inference's units)")
        ax.set_ylabel("bursts")
        ax.set_title(f"{model} on {profile} ({carriage}): uplink burst sizes")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3, axis="y")
        path = Path("plots") / f"bursts_{_slug(model, profile, carriage)}.png"
        _save(fig, out_dir / path)
        plots.append(Plot(f"Uplink burst sizes: {model}, {profile}, {carriage}", path,
                          "Histogram of the bytes on the wire of each measured inference's uplink burst (its AIPS and "
                          "data unit, or JSON-baseline unit, with Ethernet/IP/TCP headers and any retransmission), "
                          "per partition, measured from the captures; a lossless carriage sends the same bytes every "
                          "time, so each partition is one bar. Red: the budget's payload, which counts application "
                          "bytes (the wire adds ~4.6 % at full frames): a bar right of it is over the budget.",
                          "burst"))
    return plots


def traffic_plots(records: Sequence[dict[str, Any]], summaries: Sequence[PointSummary], budget: Budget,
                  results_dir: Path, out_dir: Path) -> list[Plot]:
    return (latency_cdfs(records, summaries, budget, out_dir) + bitrate_plots(records, summaries, results_dir, out_dir)
            + burst_histograms(records, summaries, budget, out_dir))
