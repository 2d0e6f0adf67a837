"""What a scenario run showed, from its rows and applied link events: partition switches, how many inferences
the policy took to react to each capacity drop, the stalls around outages, an AIPS lifetime check, and the short
Markdown summary written beside the records. Pure functions over the JSON rows, so a saved run can be
re-analysed."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from splitbed.scenario.spec import Scenario
from splitbed.scenario.timeline import direction_capacity


@dataclass(frozen=True)
class Reaction:
    """After a link change that lowered the uplink capacity: the partition in use before it, and how many
    inferences started after the change still used it (`inferences_to_react`, None: it never moved)."""

    label: str
    at_s: float
    capacity_before: float | None
    capacity_after: float | None
    partition_before: str | None
    inferences_to_react: int | None
    seconds_to_react: float | None
    partition_after: str | None


def inference_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("record_type") in ("inference", "job_error")]


def switches(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every change of partition or compression between consecutive successful inferences."""
    result = []
    previous: dict[str, Any] | None = None
    for row in inference_rows(rows):
        if row.get("status") != "ok":
            continue
        if previous is not None and (row["partition_name"], row.get("compression_profile")) != \
                (previous["partition_name"], previous.get("compression_profile")):
            adaptive = row.get("adaptive") or {}
            result.append({"index": row["scenario"]["index"], "t_s": row["scenario"]["t_start_s"],
                           "from": previous["partition_name"], "to": row["partition_name"],
                           "from_compression": previous.get("compression_profile"),
                           "to_compression": row.get("compression_profile"), "reason": adaptive.get("reason"),
                           "rate_estimate_mbit": adaptive.get("rate_estimate_mbit"),
                           "raw_bytes_from": previous.get("raw_intermediate_bytes"),
                           "raw_bytes_to": row.get("raw_intermediate_bytes")})
        previous = row
    return result


def reactions(rows: list[dict[str, Any]], link_events: list[dict[str, Any]],
              base_capacity_mbit: float | str | None = None) -> list[Reaction]:
    """For each applied change that lowered a numeric uplink capacity (outages excluded: see `stalls`);
    `base_capacity_mbit`: the uplink's capacity before the first change (the base profile's)."""
    result = []
    capacity = float(base_capacity_mbit) if isinstance(base_capacity_mbit, (int, float)) else None
    done = inference_rows(rows)
    for event in link_events:
        new = event.get("uplink_capacity_mbit")
        old = capacity
        if isinstance(new, (int, float)) and event["kind"] != "outage_start":
            capacity = float(new)
        if event["kind"] in ("outage_start", "outage_end") or not isinstance(new, (int, float)) \
                or old is None or new >= old or event.get("error"):
            continue
        before = [r for r in done if r["scenario"]["t_start_s"] < event["applied_s"] and r.get("status") == "ok"]
        after = [r for r in done if r["scenario"]["t_start_s"] >= event["applied_s"]]
        old_part = before[-1]["partition_name"] if before else None
        count: int | None = None
        seconds = None
        moved_to = None
        for n, row in enumerate(after):
            if row.get("status") == "ok" and row["partition_name"] != old_part:
                count, seconds, moved_to = n, row["scenario"]["t_start_s"] - event["applied_s"], row["partition_name"]
                break
        result.append(Reaction(event["label"], event["at_s"], old, float(new), old_part, count, seconds, moved_to))
    return result


def stalls(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Inferences that overlapped an outage: status, delivery and end-to-end times, time after the link returned."""
    result = []
    for row in inference_rows(rows):
        info = row["scenario"]
        if info.get("outage_overlap_ms", 0) > 0:
            error = row.get("error") or {}
            result.append({"index": info["index"], "t_start_s": info["t_start_s"], "status": row.get("status"),
                           "error": error.get("code"), "outage_overlap_ms": info["outage_overlap_ms"],
                           "after_link_return_ms": info.get("after_link_return_ms"),
                           "delivery_ms": row.get("delivery_ms"), "e2e_latency_ms": row.get("e2e_latency_ms"),
                           "wall_ms": (info["end_ns"] - info["start_ns"]) / 1e6})
    return result


def check_aips_lifetime(rows: list[dict[str, Any]]) -> list[str]:
    """Violations of the AIPS lifetime rules (S4-260189) seen in the records; empty when all hold.

    Per session, in order: the first data goes with an AIPS that the remote activates; a record that sends a new
    AIPS (partition, shape, tensor count or compression change) must see the remote end the active one with the
    reason docs/FORMAT.md gives (`tensor_count_changed`, else `shape_changed`, else `new_aips_other_id` /
    `new_aips_same_id`) and activate the new one with the record's partition_id; a record
    that sends none must run on an active AIPS of its own partition and see no lifecycle event. A new session
    (after a timeout) starts with no active AIPS. A session that began before the first row (its
    `session_inference_index` is above 0: e.g. a testbed's warm-up ran on it) has an AIPS these rows did not see
    activated; its first row without an AIPS is taken as running on it."""
    problems: list[str] = []
    session = None
    active: dict[str, Any] | None = None
    unseen_start = False  # the session's earlier inferences are not in the rows: its active AIPS is unknown
    for row in inference_rows(rows):
        if row.get("record_type") != "inference" or row.get("encoding") != "tlv":
            continue
        where = f"inference {row['scenario']['index']} ({row.get('partition_name')})"
        if row.get("session_id") != session:
            session, active = row.get("session_id"), None
            unseen_start = int(row.get("session_inference_index") or 0) > 0
            if row.get("aips_sent") is False and row.get("status") == "ok" and not unseen_start:
                problems.append(f"{where}: first inference of session {session} sent no AIPS")
        events = [e for e in row.get("aips_events") or [] if e.get("event") in ("activated", "ended")]
        ok = row.get("status") == "ok"
        if unseen_start and ok and not row.get("aips_sent") and not events:
            active = {"aips_id": row.get("aips_id"), "partition_id": row["partition_id"],
                      "shapes": [t.get("shape") for t in row.get("tensors") or []]}
        if row.get("aips_sent") or active is not None:
            unseen_start = False
        if row.get("aips_sent"):
            ended = [e for e in events if e["event"] == "ended"]
            activated = [e for e in events if e["event"] == "activated"]
            shapes = [t.get("shape") for t in row.get("tensors") or []]
            if active is not None and ok:
                if len(shapes) != len(active["shapes"]):  # precedence as docs/FORMAT.md: count, shape, id
                    want = "tensor_count_changed"
                elif shapes != active["shapes"]:
                    want = "shape_changed"
                else:
                    want = "new_aips_same_id" if row.get("aips_id") == active["aips_id"] else "new_aips_other_id"
                if not any(e.get("aips_id") == active["aips_id"] and e.get("reason") == want for e in ended):
                    problems.append(f"{where}: sent AIPS {row.get('aips_id')} ({row.get('aips_reason')}) but the "
                                    f"remote did not end AIPS {active['aips_id']} with {want}: {events}")
                if row.get("aips_reason") == "partition_changed" and active["partition_id"] == row["partition_id"]:
                    problems.append(f"{where}: aips_reason partition_changed but the partition did not change")
                if active["partition_id"] != row["partition_id"] and row.get("aips_reason") != "partition_changed":
                    problems.append(f"{where}: the partition changed but aips_reason is {row.get('aips_reason')}")
            if ok and not any(e.get("aips_id") == row.get("aips_id") and e.get("partition_id") == row["partition_id"]
                              for e in activated):
                problems.append(f"{where}: the remote did not activate AIPS {row.get('aips_id')} for partition "
                                f"{row['partition_id']}: {events}")
            if ok:
                active = {"aips_id": row.get("aips_id"), "partition_id": row["partition_id"], "shapes": shapes}
        elif ok:
            if active is None:
                problems.append(f"{where}: data without an AIPS while none was active")
            else:
                if active["partition_id"] != row["partition_id"]:
                    problems.append(f"{where}: partition {row['partition_id']} ran on the AIPS of partition "
                                    f"{active['partition_id']} without a new AIPS")
                shapes = [t.get("shape") for t in row.get("tensors") or []]
                if shapes != active["shapes"]:
                    problems.append(f"{where}: tensor shapes {shapes} changed from {active['shapes']} without a "
                                    "new AIPS")
            if events:
                problems.append(f"{where}: AIPS lifecycle events without a new AIPS: {events}")
        if not ok:
            active = None if (row.get("error") or {}).get("fatal") else active
    return problems


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def _mechanisms(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(side, "emulated as stretch in n records, ...") from the records' device blocks."""
    result = []
    for side in ("ue", "edge"):
        counts: dict[str, int] = {}
        for row in rows:
            device = row.get(f"{side}_device")
            if isinstance(device, dict):
                counts[str(device.get("mechanism"))] = counts.get(str(device.get("mechanism")), 0) + 1
        if counts:
            result.append((side.upper() if side == "ue" else side, ", ".join(f"{m} in {n} records"
                                                                              for m, n in counts.items())))
    return result


def summary_markdown(scenario: Scenario, rows: list[dict[str, Any]], link_events: list[dict[str, Any]],
                     problems: list[str]) -> str:
    """The short human summary (summary.md)."""
    done = inference_rows(rows)
    ok = [r for r in done if r.get("status") == "ok"]
    work = scenario.workload
    lines = [f"# Scenario `{scenario.name}`", "", scenario.description, "",
             f"- base link profile: `{scenario.base.name}`; model `{work.model}`, partition `{work.partition}`, "
             f"weights `{work.weights}`; gap {work.gap_ms:g} ms; deadline {work.deadline_s:g} s per inference",
             f"- devices (docs/DEVICES.md): UE `{scenario.ue_device}`, edge `{scenario.edge_device}`"
             + "".join(f"; {side} {mechanism}" for side, mechanism in _mechanisms(ok)),
             f"- inferences: {len(done)} ({len(ok)} ok, {len(done) - len(ok)} error)"]
    if work.adaptive:
        slowdown = (scenario.policy or {}).get("ue_slowdown", 1.0)
        lines.append(f"- adaptive policy `{scenario.policy or {}}`" + (
            f"; decisions assume a UE {slowdown:g}x slower than the measuring host, measured latencies do not "
            "include that" if slowdown != 1.0 else ""))
    for problem in problems:
        lines.append(f"- **problem:** {problem}")
    lines += ["", "## Link changes (applied)", "", "| t (s) | late (ms) | change | uplink capacity (Mbit/s) |",
              "| --- | --- | --- | --- |"]
    for event in link_events:
        cap = event.get("uplink_capacity_mbit")
        lines.append(f"| {event['applied_s']:.3f} | {event['late_ms']:.1f} | {event['label']}"
                     f"{' (FAILED: ' + event['error'] + ')' if event.get('error') else ''} | "
                     f"{'unshaped' if cap is None else cap} |")
    lines += ["", "## Phases", "", "| from (s) | link | inferences | ok | median e2e (ms) | partitions used |",
              "| --- | --- | --- | --- | --- | --- |"]
    bounds = [0.0] + [e["applied_s"] for e in link_events] + [float("inf")]
    names = [scenario.base.name] + [e["profile"] for e in link_events]
    for (start, stop), name in zip(zip(bounds, bounds[1:], strict=False), names, strict=True):
        phase = [r for r in done if start <= r["scenario"]["t_start_s"] < stop]
        if not phase:
            continue
        phase_ok = [r for r in phase if r.get("status") == "ok"]
        used: dict[str, int] = {}
        for row in phase_ok:
            used[row["partition_name"]] = used.get(row["partition_name"], 0) + 1
        lines.append(f"| {start:.1f} | `{name}` | {len(phase)} | {len(phase_ok)} | "
                     f"{_median([r['e2e_latency_ms'] for r in phase_ok])} | "
                     f"{', '.join(f'{k} x{v}' for k, v in used.items()) or '-'} |")
    moved = switches(rows)
    if moved:
        lines += ["", "## Partition switches", "", "| inference | t (s) | from | to | raw bytes | rate estimate "
                  "(Mbit/s) |", "| --- | --- | --- | --- | --- | --- |"]
        for s in moved:
            rate = s["rate_estimate_mbit"]
            lines.append(f"| {s['index']} | {s['t_s']:.2f} | {s['from']} | {s['to']} | {s['raw_bytes_from']:,} -> "
                         f"{s['raw_bytes_to']:,} | {'-' if rate is None else f'{rate:.1f}'} |")
    reacted = reactions(rows, link_events, direction_capacity(scenario.base.uplink))
    if reacted:
        lines += ["", "## Reaction to capacity drops", ""]
        for r in reacted:
            if r.inferences_to_react is None:
                lines.append(f"- {r.label} at {r.at_s:g} s ({r.capacity_before:g} -> {r.capacity_after:g} Mbit/s): "
                             f"stayed on `{r.partition_before}`")
            else:
                lines.append(f"- {r.label} at {r.at_s:g} s ({r.capacity_before:g} -> {r.capacity_after:g} Mbit/s): "
                             f"`{r.partition_before}` -> `{r.partition_after}` after {r.inferences_to_react} "
                             f"inference(s) on the old partition ({r.seconds_to_react:.2f} s)")
    stalled = stalls(rows)
    if stalled:
        lines += ["", "## Inferences during outages", "", "| inference | status | outage overlap (ms) | after link "
                  "return (ms) | delivery (ms) | wall (ms) |", "| --- | --- | --- | --- | --- | --- |"]
        for s in stalled:
            after = s["after_link_return_ms"]
            delivery = s["delivery_ms"]
            lines.append(f"| {s['index']} | {s['status']}{' ' + s['error'] if s['error'] else ''} | "
                         f"{s['outage_overlap_ms']:.0f} | {'-' if after is None else f'{after:.0f}'} | "
                         f"{'-' if delivery is None else f'{delivery:.0f}'} | {s['wall_ms']:.0f} |")
    violations = check_aips_lifetime(rows)
    sent = [r for r in done if r.get("aips_sent")]
    reasons: dict[str, int] = {}
    for row in sent:
        reasons[row["aips_reason"]] = reasons.get(row["aips_reason"], 0) + 1
    lines += ["", "## AIPS", "", f"- AIPS sent with {len(sent)} inferences: "
              + (", ".join(f"{k} x{v}" for k, v in reasons.items()) or "none"),
              f"- sessions: {len({r.get('session_id') for r in done if r.get('session_id')})}",
              "- lifetime check: " + ("all rules hold" if not violations else f"{len(violations)} violation(s)")]
    lines += [f"  - {v}" for v in violations[:20]]
    lines += ["", "Files: `records.jsonl` (metrics records + `scenario`), `link_events.jsonl`, `timeline.png`, "
              "`scenario.json`, `warmup.jsonl`.", ""]
    return "\n".join(lines)
