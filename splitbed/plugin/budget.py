"""Latency budgets per partition: predict from sizes, the link profile and measured compute whether a partition
meets its budget, then compare with the measurement.

Budgets come from splitbed/data/budgets.toml through splitbed.report.budgets.get_budget (never copied). The
link part of the prediction is splitbed.advise's model (TCP segments + headers at the profile's rate, one-way
delay, slow start after idle); the compute part comes from measured records:

    predicted e2e = preprocess + head + encode + uplink(uplink_bytes) + remote processing
                    + downlink(downlink_bytes) + result decode

(per record, then the median; network terms: `network_ms`).

Two predictions per partition: `predicted_ms` from calibration inferences made before the measurement (it
decides meets/misses ahead of measuring), and `predicted_same_run_ms` from the measured inferences' own compute
figures, so that the agreement check tests the network model and not CPU noise between runs on a shared machine.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

COMPUTE_FIELDS = ("preprocess_ms", "local_inference_ms", "encode_ms", "remote_processing_ms", "result_decode_ms")


def network_ms(uplink_bytes: int, downlink_bytes: int, idle_ms: float, profile: Any) -> dict[str, float]:
    """Predicted uplink and downlink transfer times (first byte sent -> last byte delivered) on `profile`.

    Uplink: splitbed.advise's model (segments + headers at the profile's rate, one-way delay, slow start again
    when the sender sat idle longer than the RTO). Downlink: one RESULT per inference. When the remote sat idle
    longer than the RTO (the same condition, as it sends once per inference) its window restarts at the initial
    10 segments (RFC 5681 4.1), and a RESULT larger than that takes one extra round trip per further window.
    Otherwise the window it grew on the session's first RESULTs still holds, and no extra round trip is paid:
    measured with CUBIC on lte, 23.7 kB RESULTs took 20-22 ms (one-way delay 16.3 ms) after the first
    (60 ms). An earlier version always added the round trips; that matched only under the host's BBR."""
    from splitbed.advise import INITIAL_WINDOW_SEGMENTS, MIN_RTO_MS, MSS_BYTES, LinkModel

    link = LinkModel.from_profile(profile)
    slow_start = link.slow_start_after_idle and idle_ms > max(MIN_RTO_MS, link.rtt_ms)
    uplink = link.uplink.transfer_ms(uplink_bytes, rtt_ms=link.rtt_ms, slow_start=slow_start)
    windows = max(1, math.ceil(downlink_bytes / (INITIAL_WINDOW_SEGMENTS * MSS_BYTES)))
    downlink = link.downlink.transfer_ms(downlink_bytes, rtt_ms=link.rtt_ms, slow_start=False)
    if slow_start:
        downlink += (windows - 1) * link.rtt_ms
    return {"uplink_ms": uplink, "downlink_ms": downlink, "slow_start": float(slow_start),
            "rtt_ms": link.rtt_ms}


def compute_ms(record: dict[str, Any]) -> float:
    """Everything in a record's e2e latency that is not on the network."""
    return sum(float(record[f]) for f in COMPUTE_FIELDS)


def predict_e2e_ms(records: Sequence[dict[str, Any]], profile: Any) -> tuple[float, dict[str, float]]:
    """Predicted e2e latency: the median over `records` of (its measured compute + the predicted network time
    for the median sizes). Per record, so that CPU contention moves prediction and measurement together."""
    uplink_bytes = int(statistics.median(int(r["uplink_bytes"]) for r in records))
    downlink_bytes = int(statistics.median(int(r["downlink_bytes"]) for r in records))
    compute = [compute_ms(r) for r in records]
    remote_to_next_send = statistics.median(
        float(r["remote_processing_ms"]) + float(r["result_decode_ms"]) + float(r["preprocess_ms"])
        + float(r["local_inference_ms"]) + float(r["encode_ms"]) for r in records)
    net = network_ms(uplink_bytes, downlink_bytes, remote_to_next_send, profile)
    # the uplink sits idle from the end of one transfer to the next inference's send
    idle = remote_to_next_send + net["downlink_ms"]
    net = network_ms(uplink_bytes, downlink_bytes, idle, profile)
    total = statistics.median(c + net["uplink_ms"] + net["downlink_ms"] for c in compute)
    return total, dict(net, compute_ms=statistics.median(compute), uplink_bytes=float(uplink_bytes),
                       downlink_bytes=float(downlink_bytes))


@dataclass
class BudgetRow:
    """One line of the budget table (the report includes it)."""

    case: str
    model: str
    partition: str
    profile: str
    carriage: str
    uplink_bytes: int
    budget: str
    budget_e2e_ms: float
    budget_payload_bytes: int | None
    predicted_ms: float
    predicted_meets: bool
    measured_ms: float
    measured_meets: bool
    predicted_same_run_ms: float
    tolerance_ms: float
    agree: bool
    payload_meets: bool | None
    weights: str

    @property
    def decision_matches(self) -> bool:
        return self.predicted_meets == self.measured_meets


def tolerance(measured_ms: float, settings: dict[str, Any]) -> float:
    return max(float(settings["tolerance_ms"]), float(settings["tolerance_fraction"]) * measured_ms)


MD_COLUMNS = ("model", "partition", "profile", "carriage", "uplink_bytes", "budget_e2e_ms", "predicted_ms",
              "predicted_meets", "measured_ms", "measured_meets", "predicted_same_run_ms", "tolerance_ms", "agree",
              "payload_meets")


def write_table(rows: Sequence[BudgetRow], folder: Path) -> tuple[Path, Path]:
    """budgets.csv (every field) and budgets.md (the report's table) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = folder / "budgets.csv", folder / "budgets.md"
    ordered = sorted(rows, key=lambda r: (r.model, r.profile, r.partition, r.carriage))
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(ordered[0]).keys()) if ordered else ["case"])
        writer.writeheader()
        for row in ordered:
            writer.writerow(asdict(row))
    lines = []
    if ordered:
        first = ordered[0]
        lines += [f"# Latency budgets per partition: {first.budget}", "",
                  f"Budget: end-to-end {first.budget_e2e_ms:g} ms"
                  + (f", payload {first.budget_payload_bytes} bytes" if first.budget_payload_bytes else "")
                  + " (splitbed/data/budgets.toml). Medians; times in ms. Weights: " + first.weights + ".", ""]
    lines.append("| " + " | ".join(MD_COLUMNS) + " |")
    lines.append("|" + "---|" * len(MD_COLUMNS))
    for row in ordered:
        values = asdict(row)
        lines.append("| " + " | ".join(_cell(values[c]) for c in MD_COLUMNS) + " |")
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return "-" if value is None else str(value)
