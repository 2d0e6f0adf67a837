"""The report's figures drawn from individual records and from the sweep's captures (plots.py draws those made of
point summaries). One figure per (profile, model, carriage), PNG (300 dpi) and SVG:

- **latency CDF**: the empirical distribution of each partition's uplink delivery times, with the budget's UL
  latency as a vertical line and the 99 % level as a horizontal one, so the share within the budget and the
  distance to a "99 % within" KPI read off where each curve crosses them; and of the end-to-end latency beside it;
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
from splitbed.sweep.store import is_measurement
from splitbed.sweep.summary import PointSummary, record_key

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


def latency_cdfs(records: Iterable[dict[str, Any]], summaries: Iterable[PointSummary], budget: Budget,
                 out_dir: Path) -> list[Plot]:
    plt = _pyplot()
    points = _by_point(records)
    plots = []
    for (profile, model, carriage), members in _groups(summaries).items():
        fig, axes = plt.subplots(1, 2, figsize=(13.0, 4.6))
        colours = _colours(len(members))
        drawn = False
        for ax, key, what in ((axes[0], "delivery_ms", "uplink delivery"), (axes[1], "e2e_latency_ms",
                                                                            "end-to-end latency")):
            for summary, colour in zip(members, colours, strict=True):
                values = [v for r in points.get(summary.key, []) if (v := BY_KEY[key].value(r)) is not None]
                if not values:
                    continue
                xs, ys = _ecdf(values)
                ax.step([xs[0]] + xs, [0.0] + ys, where="post", color=colour, linewidth=1.6,
                        label=f"{summary.partition} (n={len(values)})")
                drawn = True
            ax.axhline(0.99, color="grey", linestyle=":", linewidth=1, label="99 % of inferences")
            ax.set_xscale("log")
            if key == "delivery_ms" and budget.uplink_latency_ms is not None:
                ax.axvline(budget.uplink_latency_ms, color="red", linestyle="--", linewidth=1.4,
                           label=f"budget: UL latency {budget.uplink_latency_ms:g} ms")
                low, high = ax.get_xlim()  # the budget line well inside the axes, whichever side of the data
                ax.set_xlim(min(low, budget.uplink_latency_ms / 1.3), max(high, budget.uplink_latency_ms * 1.3))
            _plain_log_axis(ax.xaxis)
            ax.tick_params(axis="x", which="minor", labelsize=7)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel(f"{what} (ms, log)")
            ax.set_ylabel("share of inferences at or below")
            ax.set_title(f"{model} on {profile} ({carriage}): {what}")
            ax.grid(alpha=0.3, which="both")
        if not drawn:
            plt.close(fig)
            continue
        axes[0].legend(fontsize=7, loc="lower right")
        path = Path("plots") / f"cdf_{_slug(model, profile, carriage)}.png"
        _save(fig, out_dir / path)
        plots.append(Plot(f"Latency CDF per partition: {model}, {profile}, {carriage}", path,
                          "Empirical CDF of each partition's measured inferences. Left: uplink delivery time with the "
                          f"budget's UL latency ({budget.title}) as the red line: where a curve crosses it is the "
                          "share of inferences within the budget; the dotted line is the 99 % a KPI such as '99 % "
                          "within 15 ms' asks for. Right: end-to-end latency (preprocessing to predictions), which "
                          "the budget does not bound.", "cdf"))
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
