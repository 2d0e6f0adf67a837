"""The report's PNG plots (matplotlib, Agg backend: no display needed).

- stacked latency per partition: the median of each window of an inference (preprocessing, local inference,
  encode, uplink delivery, remote inference, remote decode/reply, downlink, result read lag, result decode),
  with the median end-to-end latency and its 95% CI as a marker; medians of parts do not add up exactly to the
  median of the whole, which is why the whole is drawn too;
- intermediate data size per partition, log scale: raw tensor bytes and the bytes each carriage put on the wire;
- end-to-end latency and uplink delivery time against the configured uplink rate, one series per partition,
  across profiles that differ in their uplink rate alone (else not drawn, and the report says why), with the
  budget lines (the budget's UL latency on the delivery panel: TS 22.261 defines it as the payload's transfer).
The best partition (lowest median end-to-end latency) is marked in each. Every figure is written as PNG (300 dpi)
and SVG; splitbed.report.traffic_plots adds the figures drawn from individual records and captures.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitbed.report.budgets import Budget
from splitbed.sweep.figures import LATENCY_SEGMENTS
from splitbed.sweep.summary import PointSummary, best_per_group

DPI = 300  # PNG for print and slides; every figure is also written as SVG beside it
SEGMENT_COLOURS = ("#9e9e9e", "#1f77b4", "#17becf", "#d62728", "#2ca02c", "#98df8a", "#ff7f0e", "#ffbb78",
                   "#c5b0d5")
BEST_MARK = "\u2605"


@dataclass
class Plot:
    """A written figure: `path` (PNG, 300 dpi) relative to the report directory; `svg` the same figure as SVG."""

    title: str
    path: Path
    caption: str
    kind: str

    @property
    def svg(self) -> Path:
        return self.path.with_suffix(".svg")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """`path` (PNG at DPI) and the same figure as SVG beside it (`path` with .svg)."""
    import matplotlib

    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        for kind, target in (("png", path), ("svg", path.with_suffix(".svg"))):
            buffer = io.BytesIO()
            # SVG text stays text (editable in a document, searchable), not glyph outlines
            with matplotlib.rc_context({"svg.fonttype": "none"}):
                fig.savefig(buffer, format=kind, dpi=DPI, bbox_inches="tight", metadata=_METADATA[kind])
            target.write_bytes(buffer.getvalue())
    finally:
        plt.close(fig)


# no creation date in the files: the same records give the same bytes
_METADATA: dict[str, dict[str, Any]] = {"png": {"Software": "splitbed (matplotlib)"},
                                        "svg": {"Date": None, "Creator": "splitbed (matplotlib)"}}


def _slug(*parts: str) -> str:
    return "_".join("".join(c if c.isalnum() or c in "-." else "-" for c in p) for p in parts)


def latency_stacks(summaries: list[PointSummary], budget: Budget, out_dir: Path) -> list[Plot]:
    """One stacked bar chart per (profile, model, carriage)."""
    plt = _pyplot()
    best = best_per_group(summaries)
    groups: dict[tuple[str, str, str, str, str], list[PointSummary]] = {}
    for s in summaries:
        groups.setdefault((s.profile, s.ue_device, s.edge_device, s.model, s.carriage), []).append(s)
    plots = []
    for (profile, ue, edge, model, carriage), members in groups.items():
        members = sorted(members, key=lambda s: s.partition_id)
        fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(members) + 3), 4.6))
        x = list(range(len(members)))
        bottoms = [0.0] * len(members)
        for (key, label), colour in zip(LATENCY_SEGMENTS, SEGMENT_COLOURS, strict=True):
            heights = [s.segments[key].median or 0.0 for s in members]
            ax.bar(x, heights, bottom=bottoms, color=colour, label=label, width=0.7)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        medians = [s.figures["e2e_latency_ms"].median for s in members]
        lows = [s.figures["e2e_latency_ms"].low for s in members]
        highs = [s.figures["e2e_latency_ms"].high for s in members]
        for i, (m, lo, hi) in enumerate(zip(medians, lows, highs, strict=True)):
            if m is None:
                continue
            yerr = [[m - lo], [hi - m]] if lo is not None and hi is not None else None
            ax.errorbar([i], [m], yerr=yerr, fmt="o", color="black", markersize=4, capsize=3,
                        label="end-to-end median [95% CI]" if i == 0 else None)
        winner = best.get((profile, ue, edge, model, carriage))
        if winner is not None:
            i = members.index(winner)
            ax.bar([i], [bottoms[i]], width=0.78, fill=False, edgecolor="gold", linewidth=2.5)
            ax.annotate(f"{BEST_MARK} best", (i, bottoms[i]), textcoords="offset points", xytext=(0, 20),
                        ha="center", color="#b8860b", fontweight="bold")
        if budget.uplink_latency_ms is not None:
            _budget_verdicts(ax, members, budget)
        ax.set_xticks(x, [s.partition for s in members], rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("latency (ms), medians")
        ax.set_title(f"{model} on {profile} ({carriage}; UE {ue}, edge {edge}): latency per partition", pad=20)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(axis="y", alpha=0.3)
        path = Path("plots") / f"latency_{_slug(model, profile, carriage, ue, edge)}.png"
        _save(fig, out_dir / path)
        plots.append(Plot(f"Latency per partition: {model}, {profile}, {carriage}", path,
                          "Stacked medians of each window of one inference; black: median end-to-end latency with "
                          "its 95% CI; gold outline: best partition. Above the plot, over each bar, how many of its "
                          f"inferences delivered their uplink data within the budget's UL latency ({budget.title}: "
                          "it bounds the uplink delivery segment, not the whole bar): green all, orange some, red "
                          "none.",
                          "latency"))
    return plots


VERDICT_COLOURS = {"all": "#2e7d32", "some": "#ef6c00", "none": "#c62828"}


def _budget_verdicts(ax: Any, members: list[PointSummary], budget: Budget) -> None:
    """A row above the axes, one cell per bar: `✓ 10/10` (green: all), `~ 4/10` (orange), `✗ 0/10` (red), the
    inferences whose uplink delivery met the budget's UL latency; clear of the bars and their error bars."""
    shown = False
    for i, summary in enumerate(members):
        share = next((b for b in summary.budget_shares if b.budget == budget.name and b.kind == "latency"), None)
        if share is None or not share.n:
            continue
        verdict = "all" if share.met == share.n else "none" if share.met == 0 else "some"
        mark = {"all": "\u2713", "some": "~", "none": "\u2717"}[verdict]
        ax.annotate(f"{mark} {share.met}/{share.n}", xy=(i, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=7.5,
                    color=VERDICT_COLOURS[verdict], fontweight="bold")
        shown = True
    if shown and budget.uplink_latency_ms is not None:
        ax.annotate(f"UL delivery \u2264 {budget.uplink_latency_ms:g} ms:", xy=(0.0, 1.0), xycoords="axes fraction",
                    xytext=(-6, 4), textcoords="offset points", ha="right", va="bottom", fontsize=7.5)


def size_plots(summaries: list[PointSummary], budget: Budget, out_dir: Path) -> list[Plot]:
    """One log-scale chart per model: raw bytes and delivered bytes per carriage, per partition."""
    plt = _pyplot()
    by_model: dict[str, list[PointSummary]] = {}
    for s in summaries:
        by_model.setdefault(s.model, []).append(s)
    plots = []
    for model, members in by_model.items():
        partitions = sorted({(s.partition_id, s.partition) for s in members})
        x = list(range(len(partitions)))
        fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(partitions) + 3), 4.6))
        raw = {s.partition_id: s.median("raw_intermediate_bytes") for s in members}
        ax.plot(x, [raw.get(pid) or float("nan") for pid, _ in partitions], "k-o", label="raw tensor bytes",
                linewidth=2)
        carriages = sorted({s.carriage for s in members})
        for carriage in carriages:
            sizes: dict[int, list[float]] = {}
            for s in members:
                size = s.median("serialized_intermediate_bytes")
                if s.carriage == carriage and size is not None:
                    sizes.setdefault(s.partition_id, []).append(size)
            ys = [_middle(sizes.get(pid)) for pid, _ in partitions]
            ax.plot(x, ys, marker="s", linestyle="--", label=f"delivered: {carriage}")
        if budget.payload_bytes:
            ax.axhline(budget.payload_bytes, color="red", linestyle=":", linewidth=1,
                       label=f"budget payload {budget.payload_bytes / 1e6:g} MB")
        ax.set_yscale("log")
        ax.set_xticks(x, [name for _, name in partitions], rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("bytes per inference (log scale)")
        ax.set_title(f"{model}: intermediate data size per partition")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3, which="both", axis="y")
        path = Path("plots") / f"size_{_slug(model)}.png"
        _save(fig, out_dir / path)
        plots.append(Plot(f"Intermediate data size: {model}", path,
                          "Raw tensor bytes (float32) and the serialized intermediate data each carriage delivered "
                          "(median per partition; lossless sizes do not depend on the link).", "size"))
    return plots


def _middle(values: list[float] | None) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


RATE_PANELS = (("e2e_latency_ms", "end-to-end latency"), ("delivery_ms", "uplink delivery of the intermediate data"))


IGNORED_PROFILE_KEYS = ("name", "description", "source", "seed")


def _without_rate(profile: Mapping[str, Any]) -> str:
    """The profile with what may differ within a rate family removed: names, sources, RNG seeds, uplink rate."""
    reduced = {k: v for k, v in profile.items() if k not in IGNORED_PROFILE_KEYS}
    for side in ("uplink", "downlink"):
        direction = dict(reduced.get(side) or {})
        direction.pop("seed", None)
        if side == "uplink":
            direction.pop("rate_mbit", None)
        reduced[side] = direction
    return json.dumps(reduced, sort_keys=True, default=str)


def rate_families(profiles: Mapping[str, Mapping[str, Any]]) -> tuple[list[list[str]], str | None]:
    """Groups of profiles that differ in their uplink rate alone (two or more rates each), and, when there is no
    such group, why no latency-vs-rate line can be drawn."""
    rated = {name: p for name, p in profiles.items() if (p.get("uplink") or {}).get("rate_mbit") is not None}
    unrated = sorted(set(profiles) - set(rated))
    groups: dict[str, list[str]] = {}
    for name, profile in sorted(rated.items()):
        groups.setdefault(_without_rate(profile), []).append(name)
    families = [sorted(members, key=lambda n: float(rated[n]["uplink"]["rate_mbit"])) for members in groups.values()
                if len({float(rated[n]["uplink"]["rate_mbit"]) for n in members}) >= 2]
    if families:
        return families, None
    if not rated:
        return [], ("no profile measured has a fixed uplink rate" + (f" ({', '.join(unrated)}: unshaped or "
                                                                    "trace-driven)" if unrated else ""))
    if len(rated) == 1:
        [(name, profile)] = rated.items()
        return [], (f"only one uplink rate was measured ({name}, {profile['uplink']['rate_mbit']:g} Mbit/s): "
                    "a line needs profiles that differ in their uplink rate alone")
    return [], (f"the profiles with a fixed uplink rate ({', '.join(sorted(rated))}) differ in more than that rate "
                "(delay, jitter, loss, queue or the downlink), so a line across them would mix those effects with "
                "the rate's; sweep profiles that differ in the uplink rate alone (docs/REPORT.md)")


def rate_plots(summaries: list[PointSummary], budget: Budget, out_dir: Path,
               profiles: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[list[Plot], list[str]]:
    """End-to-end latency and uplink delivery time against the configured uplink rate, per (family, model,
    carriage), one series per partition, across profiles that differ in their uplink rate alone
    (`rate_families`); the budget's UL latency bounds the delivery (TS 22.261), so its line is drawn there.
    Returns the plots and the notes saying what was not drawn and why."""
    plt = _pyplot()
    if profiles is None:  # summaries alone: only the rate and delay are known, so only those can be compared
        profiles = {s.profile: {"uplink": {"rate_mbit": s.uplink_rate_mbit, "delay_ms": s.uplink_delay_ms}}
                    for s in summaries}
    families, reason = rate_families({name: p for name, p in profiles.items()
                                      if name in {s.profile for s in summaries}})
    notes = [f"Latency against uplink rate: not drawn: {reason}."] if reason else []
    plots = []
    for family in families:
        rated = [s for s in summaries if s.profile in family and s.median("e2e_latency_ms") is not None]
        groups: dict[tuple[str, str, str, str], list[PointSummary]] = {}
        for s in rated:
            groups.setdefault((s.ue_device, s.edge_device, s.model, s.carriage), []).append(s)
        best = best_per_group(rated)
        for (ue, edge, model, carriage), members in groups.items():
            fig, axes = plt.subplots(1, 2, figsize=(13.0, 4.8))
            partitions = sorted({(s.partition_id, s.partition) for s in members})
            for ax, (key, what) in zip(axes, RATE_PANELS, strict=True):
                _rate_panel(ax, members, partitions, key, best)
                if key == "delivery_ms" and budget.uplink_latency_ms is not None:
                    ax.axhline(budget.uplink_latency_ms, color="red", linestyle="--", linewidth=1.2,
                               label=f"budget: UL latency {budget.uplink_latency_ms:g} ms")
                if budget.uplink_rate_mbit is not None:
                    ax.axvline(budget.uplink_rate_mbit, color="red", linestyle=":", linewidth=1,
                               label=f"budget: {budget.uplink_rate_mbit:g} Mbit/s uplink")
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlabel("configured uplink rate of the link profile (Mbit/s, log)")
                ax.set_ylabel(f"{what} (ms, median, log)")
                ax.set_title(f"{model} ({carriage}; UE {ue}, edge {edge}): {what}")
                ax.grid(alpha=0.3, which="both")
            axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            path = Path("plots") / f"rate_{_slug(model, carriage, ue, edge, *family[:1], str(len(family)))}.png"
            _save(fig, out_dir / path)
            caption = ("One series per partition (median and 95% CI) against the configured uplink rate, across "
                       f"profiles that differ in that rate alone ({', '.join(family)}); left: end-to-end latency, "
                       "right: uplink delivery time, which the budget's UL latency (red dashed) bounds; gold star: "
                       "best partition (lowest median end-to-end latency) at that rate.")
            plots.append(Plot(f"Latency vs uplink rate: {model}, {carriage} ({family[0]} ... {family[-1]})", path,
                              caption, "rate"))
    return plots, notes


def _rate_panel(ax: Any, members: list[PointSummary], partitions: list[tuple[int, str]], key: str,
                best: dict[tuple[str, ...], PointSummary]) -> None:
    """One line per partition of figure `key` against the uplink rate; the best partition per profile starred."""
    plt = _pyplot()
    colours = plt.get_cmap("viridis")
    for index, (pid, name) in enumerate(partitions):
        line = sorted((s for s in members if s.partition_id == pid and s.median(key) is not None),
                      key=lambda s: s.uplink_rate_mbit or 0.0)
        xs = [s.uplink_rate_mbit for s in line]
        ys = [s.median(key) or 0.0 for s in line]
        lo = [s.figures[key].low for s in line]
        hi = [s.figures[key].high for s in line]
        yerr = [[y - (low if low is not None else y) for y, low in zip(ys, lo, strict=True)],
                [(high if high is not None else y) - y for y, high in zip(ys, hi, strict=True)]]
        ax.errorbar(xs, ys, yerr=yerr, marker="o", markersize=4, capsize=2,
                    color=colours(index / max(len(partitions) - 1, 1)), label=name)
    starred = False
    for s in members:
        if best.get((s.profile, s.ue_device, s.edge_device, s.model, s.carriage)) is s and s.median(key) is not None:
            ax.plot([s.uplink_rate_mbit], [s.median(key)], marker="*", markersize=16, color="gold",
                    markeredgecolor="black", linestyle="none", label=None if starred else f"{BEST_MARK} best per profile")
            starred = True


def all_plots(summaries: Iterable[PointSummary], budget: Budget, out_dir: Path,
              profiles: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[list[Plot], list[str]]:
    """The summary plots and the notes on what was not drawn (`profiles`: name -> profile dict, from the
    records' `link.profile`; needed to tell which profiles differ in their uplink rate alone)."""
    items = list(summaries)
    rate, notes = rate_plots(items, budget, out_dir, profiles)
    return latency_stacks(items, budget, out_dir) + size_plots(items, budget, out_dir) + rate, notes
