"""Latency budgets per partition: predict from sizes, the link profile and measured compute whether a partition
meets its budget, then compare with the measurement.

The budget's latency (TS 22.261 Table 7.10.1-1: "max allowed UL end-to-end latency", and end-to-end latency in
22.261 is the transfer from source to destination) bounds the uplink delivery of the intermediate data, a
record's `delivery_ms`: that decides meets/misses. The inference's end-to-end latency, which adds compute on
both sides and the downlink, is predicted and measured beside it, and both predictions must agree with their
measurements.

Budgets come from splitbed/data/budgets.toml through splitbed.report.budgets.get_budget (never copied). The
link part of the prediction is the advisor's model, splitbed.tcpflow (TCP segments + headers at the profile's
rate, one-way delay, and the round trips a CUBIC window that does not yet cover the bandwidth-delay product
costs); the compute part comes from measured records:

    predicted e2e = preprocess + head + encode + uplink(uplink_bytes) + remote processing
                    + downlink(downlink_bytes) + result decode

(per record, then the median; network terms: `network_ms`). Each record carries the TCP state of both senders
read just before their transfer (`uplink_tcp`, `downlink_tcp`: docs/METRICS.md, section "tcp"), so each
transfer starts from the window the kernel really had, after its restart-after-idle rule, and grows it as CUBIC
does. Records without it (older schema, a socket that cannot tell) fall back to tcpflow's steady state of
repeated transfers with the record's idle time between them (the window halved once per RTO of idle).

Two predictions per figure: `predicted_*` from calibration inferences made before the measurement (the delivery
one decides meets/misses ahead of measuring), and `predicted_same_run_*` from the measured inferences' own
compute figures and TCP states, so that the agreement check tests the network model and not CPU noise between
runs on a shared machine.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

COMPUTE_FIELDS = ("preprocess_ms", "local_inference_ms", "encode_ms", "remote_processing_ms", "result_decode_ms")


def network_ms(uplink_bytes: int, downlink_bytes: int, idle_ms: float, profile: Any, *,
               uplink_tcp: dict[str, Any] | None = None,
               downlink_tcp: dict[str, Any] | None = None) -> dict[str, float]:
    """Predicted uplink and downlink transfer times (first byte sent -> last byte delivered) on `profile`.

    Each transfer runs through splitbed.tcpflow, the advisor's model: CUBIC per round trip over the direction's
    bottleneck (rate, RTT, queue limit). With a sender's TCP state (`uplink_tcp` / `downlink_tcp`, as recorded)
    it starts from that state's window after Linux's restart-after-idle rule (SendWindow.from_tcp_state).
    Without: the steady state of a stream of such transfers on one connection, the sender idle `idle_ms` between
    them (tcpflow.steady_transfer: the window halved once per RTO of idle, not reset); both senders send once
    per inference, so the same idle period is taken for both."""
    from splitbed.linkmodel import LinkModel

    link = LinkModel.from_profile(profile)
    uplink, up_cwnd = _transfer_ms(link.uplink, uplink_bytes, link.rtt_ms, uplink_tcp, idle_ms,
                                   link.slow_start_after_idle)
    downlink, down_cwnd = _transfer_ms(link.downlink, downlink_bytes, link.rtt_ms, downlink_tcp, idle_ms,
                                       link.slow_start_after_idle)
    return {"uplink_ms": uplink, "downlink_ms": downlink, "rtt_ms": link.rtt_ms,
            "uplink_start_cwnd": up_cwnd, "downlink_start_cwnd": down_cwnd,
            "from_tcp_state": float(uplink_tcp is not None and downlink_tcp is not None)}


def _transfer_ms(direction: Any, payload_bytes: int, rtt_ms: float, state: dict[str, Any] | None, idle_ms: float,
                 restart: bool) -> tuple[float, float]:
    """(time, window it starts with in segments) of one transfer over `direction` (a linkmodel.DirectionModel).

    A recorded state gives the window and threshold but not CUBIC's own memory (the window at the last loss,
    W_max, which TCP_INFO does not show): it is taken as the recorded threshold / beta, the window whose
    reduction set that threshold (tcp_cubic.c: ssthresh = beta x cwnd at the loss), and no loss yet (0) without
    a threshold; the CUBIC epoch starts with the transfer."""
    from splitbed.linkmodel import SendWindow
    from splitbed.tcpflow import CUBIC_BETA, Bottleneck, Window, transfer

    if state is None:
        steady = direction.steady_transfer(payload_bytes, rtt_ms=rtt_ms, between_ms=idle_ms,
                                           slow_start_after_idle=restart)
        return float(steady.ms), float(statistics.median(steady.start_cwnd))
    start = SendWindow.from_tcp_state(state, slow_start_after_idle=restart)
    recorded_ssthresh = state.get("ssthresh_segments")
    w_max = float(recorded_ssthresh) / CUBIC_BETA if isinstance(recorded_ssthresh, int) else 0.0
    window = Window(cwnd=float(start.cwnd_segments),
                    ssthresh=None if start.ssthresh_segments is None else float(start.ssthresh_segments),
                    w_max=w_max)
    path = Bottleneck(direction.rate_mbit, rtt_ms, direction.queue_segments)
    done = transfer(path, window, payload_bytes, delay_ms=direction.delay_ms,
                    serialisation_ms=direction.serialisation_ms)
    return done.ms, float(start.cwnd_segments)


def compute_ms(record: dict[str, Any]) -> float:
    """Everything in a record's e2e latency that is not on the network."""
    return sum(float(record[f]) for f in COMPUTE_FIELDS)


def predict_e2e_ms(records: Sequence[dict[str, Any]], profile: Any) -> tuple[float, dict[str, float]]:
    """Predicted e2e latency: the median over `records` of (its measured compute + the predicted network time
    for its sizes, from its TCP states). Per record, so that CPU contention and window history move prediction
    and measurement together."""
    if not records:
        raise ValueError("no records to predict from")
    rows = []
    for record in records:
        # the idle period of the fallback: from the end of one transfer to the next inference's send
        idle = (float(record["remote_processing_ms"]) + float(record["result_decode_ms"])
                + float(record["preprocess_ms"]) + float(record["local_inference_ms"]) + float(record["encode_ms"]))
        first = network_ms(int(record["uplink_bytes"]), int(record["downlink_bytes"]), idle, profile,
                           uplink_tcp=record.get("uplink_tcp"), downlink_tcp=record.get("downlink_tcp"))
        net = network_ms(int(record["uplink_bytes"]), int(record["downlink_bytes"]), idle + first["downlink_ms"],
                         profile, uplink_tcp=record.get("uplink_tcp"), downlink_tcp=record.get("downlink_tcp"))
        rows.append((compute_ms(record) + net["uplink_ms"] + net["downlink_ms"], compute_ms(record), net))
    total = statistics.median(r[0] for r in rows)
    detail = {key: float(statistics.median(r[2][key] for r in rows)) for key in rows[0][2]}
    detail.update(compute_ms=statistics.median(r[1] for r in rows),
                  uplink_bytes=float(statistics.median(int(r["uplink_bytes"]) for r in records)),
                  downlink_bytes=float(statistics.median(int(r["downlink_bytes"]) for r in records)))
    return total, detail


@dataclass
class BudgetRow:
    """One line of the budget table (the report includes it). The budget's UL latency bounds the uplink delivery
    (`*_delivery_ms`, TS 22.261's UL end-to-end latency); the inference's end-to-end latency (`*_e2e_ms`, compute
    included) is predicted and measured beside it."""

    case: str
    model: str
    partition: str
    profile: str
    carriage: str
    uplink_bytes: int
    budget: str
    budget_uplink_latency_ms: float
    budget_payload_bytes: int | None
    predicted_delivery_ms: float
    predicted_meets: bool
    measured_delivery_ms: float
    measured_meets: bool
    predicted_same_run_delivery_ms: float
    delivery_tolerance_ms: float
    delivery_agree: bool
    predicted_e2e_ms: float
    measured_e2e_ms: float
    predicted_same_run_e2e_ms: float
    e2e_tolerance_ms: float
    e2e_agree: bool
    payload_meets: bool | None
    weights: str

    @property
    def agree(self) -> bool:
        return self.delivery_agree and self.e2e_agree

    @property
    def decision_matches(self) -> bool:
        return self.predicted_meets == self.measured_meets


def tolerance(measured_ms: float, settings: dict[str, Any]) -> float:
    return max(float(settings["tolerance_ms"]), float(settings["tolerance_fraction"]) * measured_ms)


MD_COLUMNS = ("model", "partition", "profile", "carriage", "uplink_bytes", "budget_uplink_latency_ms",
              "predicted_delivery_ms", "predicted_meets", "measured_delivery_ms", "measured_meets",
              "predicted_same_run_delivery_ms", "delivery_agree", "predicted_e2e_ms", "measured_e2e_ms",
              "predicted_same_run_e2e_ms", "e2e_agree", "payload_meets")


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
                  f"Budget: UL end-to-end latency {first.budget_uplink_latency_ms:g} ms, held against the uplink "
                  "delivery of the intermediate data (TS 22.261: source-to-destination transfer)"
                  + (f", payload {first.budget_payload_bytes} bytes" if first.budget_payload_bytes else "")
                  + " (splitbed/data/budgets.toml). The inference's end-to-end latency (compute included) is "
                  "predicted and measured beside it. Medians; times in ms. Weights: " + first.weights + ".", ""]
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
