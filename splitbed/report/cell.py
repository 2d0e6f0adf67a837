"""Cell capacity of a split: how many UEs sharing one cell still meet the budget, and how fairly they share it.

Input: the records of a `splitbed sweep --ues ...` (each with `cell`: `ue`, `ues`, `scheduler`,
`host_cpu_bottleneck`). Per configuration (the point key without its `ues=N` part) and per N:

- the per-UE latency CDFs (`delivery_ms`, the uplink delivery the budget bounds, and `e2e_latency_ms`);
- whether the chosen percentile of all deliveries at that N meets the budget's `uplink_latency_ms`; the cell
  capacity for the split is the largest N that does (every smaller N measured meeting it too);
- Jain's fairness index of per-UE goodput (R. Jain, D. Chiu, W. Hawe, "A quantitative measure of fairness and
  discrimination for resource allocation in shared computer systems", DEC-TR-301, 1984):
  (sum x)^2 / (N sum x^2), 1 = equal shares, 1/N = one UE has everything; goodput x of a UE = its uplink
  application bytes / its summed delivery time (measured).

Percentiles are order statistics of the measured values (nearest rank). Rows where the host CPU, not the
cell, limited the run say so: the records' `cell.host_cpu_bottleneck` (more compute processes than cores), with
two measured figures beside it, the median measured head time and its slowdown against N = 1 (the same head on
this host, so a slowdown is CPU contention, not the cell), and the median share of time some task of the host
waited for a CPU (PSI) during the inferences.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

UES_PART = "|ues="
#: The percentile `splitbed sweep --ues` reports the capacity at (`splitbed cell-report --percentile` for others).
DEFAULT_PERCENTILE = 95.0


def base_key(key: str) -> str:
    """A point key without its cell size."""
    return key.split(UES_PART, 1)[0]


def nearest_rank(values: list[float], q: float) -> float:
    """The q-quantile (0 < q <= 1) by nearest rank: a measured value, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def jain_index(values: list[float]) -> float | None:
    """Jain's fairness index of non-negative shares (None for no shares or all zero)."""
    total = sum(values)
    squares = sum(v * v for v in values)
    if not values or squares <= 0:
        return None
    return total * total / (len(values) * squares)


def _median(values: list[Any]) -> float | None:
    numbers = sorted(float(v) for v in values if isinstance(v, (int, float)))
    if not numbers:
        return None
    mid = len(numbers) // 2
    return numbers[mid] if len(numbers) % 2 else (numbers[mid - 1] + numbers[mid]) / 2


def measured(record: dict[str, Any]) -> bool:
    tags = record.get("tags") or {}
    return (record.get("status") == "ok" and isinstance(record.get("cell"), dict) and not tags.get("warmup")
            and isinstance(record.get("delivery_ms"), (int, float)))


def analyse(records: list[dict[str, Any]], budget_ms: float, percentile: float) -> dict[str, Any]:
    """Per configuration and N: per-UE latencies, the percentile vs the budget, Jain's index; the capacity."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile {percentile} is outside (0, 100]")
    groups: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if measured(record):
            key = str((record.get("tags") or {}).get("point", ""))
            groups[base_key(key)][int(record["cell"]["ues"])].append(record)
    configs = []
    for config, by_n in sorted(groups.items()):
        rows = []
        for n, recs in sorted(by_n.items()):
            per_ue: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for record in recs:
                per_ue[int(record["cell"]["ue"])].append(record)
            goodput = [sum(r.get("uplink_bytes") or 0 for r in rs) * 8 / 1e3 / sum(r["delivery_ms"] for r in rs)
                       for rs in per_ue.values() if sum(r["delivery_ms"] for r in rs) > 0]
            delivery = [float(r["delivery_ms"]) for r in recs]
            value = nearest_rank(delivery, percentile / 100)
            rows.append({
                "ues": n, "deliveries": len(delivery), "ues_measured": len(per_ue),
                "scheduler": recs[0]["cell"].get("scheduler"),
                f"delivery_p{percentile:g}_ms": value, "meets_budget": value <= budget_ms,
                "jain_goodput": jain_index(goodput), "goodput_mbit_per_ue": goodput,
                "host_cpu_bottleneck": any(r["cell"].get("host_cpu_bottleneck") for r in recs),
                "delivery_ms_by_ue": {str(ue): sorted(float(r["delivery_ms"]) for r in rs)
                                      for ue, rs in sorted(per_ue.items())},
                "e2e_ms_by_ue": {str(ue): sorted(float(r["e2e_latency_ms"]) for r in rs
                                                 if isinstance(r.get("e2e_latency_ms"), (int, float)))
                                 for ue, rs in sorted(per_ue.items())},
                "head_ms_median": _median([r.get("local_inference_measured_ms") for r in recs]),
                "host_cpu_pressure_median": _median([r["cell"].get("host_cpu_pressure_share") for r in recs]),
                "edge_queue_wait_ms_max": max((float(r.get("remote_queue_wait_ms") or 0) for r in recs), default=0.0),
            })
        first_head = rows[0]["head_ms_median"] if rows and rows[0]["ues"] == 1 else None
        for row in rows:
            head = row["head_ms_median"]
            row["head_slowdown_vs_1"] = head / first_head if head is not None and first_head else None
        capacity = None
        for row in rows:
            if not row["meets_budget"]:
                break
            capacity = row["ues"]
        configs.append({"config": config, "rows": rows, "capacity_ues": capacity})
    return {"budget_ms": budget_ms, "percentile": percentile, "metric": "delivery_ms", "configs": configs}


def figure(analysis: dict[str, Any], path: Path) -> Path:
    """Per-UE CDFs of delivery_ms, one panel per N (all configurations' UEs), the budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({row["ues"] for c in analysis["configs"] for row in c["rows"]})
    fig, axes = plt.subplots(1, max(1, len(ns)), figsize=(4 * max(1, len(ns)), 3.4), sharex=True, sharey=True,
                             squeeze=False)
    for ax, n in zip(axes[0], ns, strict=False):
        for config in analysis["configs"]:
            for row in config["rows"]:
                if row["ues"] != n:
                    continue
                for ue, values in row["delivery_ms_by_ue"].items():
                    if not values:
                        continue
                    ys = [0.0] + [(i + 1) / len(values) for i in range(len(values))]
                    ax.step([values[0], *values], ys, where="post", marker=".", label=f"UE {ue}")
        ax.axvline(analysis["budget_ms"], color="k", linestyle="--", linewidth=1)
        ax.set_title(f"{n} UE{'s' if n > 1 else ''} in the cell (measured)")
        ax.set_xlabel("uplink delivery_ms")
        ax.grid(alpha=0.3)
        if n <= 8:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("CDF")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown(analysis: dict[str, Any]) -> str:
    p = analysis["percentile"]
    lines = [f"# Cell capacity (budget: p{p:g} of delivery_ms <= {analysis['budget_ms']:g} ms)", "",
             "Measured on the emulated cell (netem.cell, userspace link); goodput = uplink bytes / delivery time "
             "per UE; Jain's index of per-UE goodput.", ""]
    for config in analysis["configs"]:
        lines += [f"## {config['config']}", "",
                  f"Largest N meeting the budget: **{config['capacity_ues'] if config['capacity_ues'] else 'none'}**",
                  "", f"| UEs | scheduler | deliveries | p{p:g} delivery ms | meets | Jain | max edge queue wait ms "
                  "| host CPU bottleneck | head ms (measured, median) | head vs N=1 | host CPU pressure |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in config["rows"]:
            jain = "-" if row["jain_goodput"] is None else f"{row['jain_goodput']:.3f}"
            lines.append(f"| {row['ues']} | {row['scheduler']} | {row['deliveries']} | "
                         f"{row[f'delivery_p{p:g}_ms']:.2f} | {'yes' if row['meets_budget'] else 'no'} | {jain} | "
                         f"{row['edge_queue_wait_ms_max']:.2f} | {'yes' if row['host_cpu_bottleneck'] else 'no'} | "
                         f"{_fmt(row['head_ms_median'], '.1f')} | {_fmt(row['head_slowdown_vs_1'], '.2f', 'x')} | "
                         f"{_fmt(row['host_cpu_pressure_median'], '.0%')} |")
        lines.append("")
    return "\n".join(lines)


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def write(records: list[dict[str, Any]], out_dir: Path, budget_ms: float, percentile: float) -> dict[str, Path]:
    """cell.json, cell.md and cell_cdf.png in `out_dir`."""
    analysis = analyse(records, budget_ms, percentile)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "cell.json", "markdown": out_dir / "cell.md", "figure": out_dir / "cell_cdf.png"}
    paths["json"].write_text(json.dumps(analysis, indent=1), encoding="utf-8")
    paths["markdown"].write_text(markdown(analysis), encoding="utf-8")
    figure(analysis, paths["figure"])
    return paths
