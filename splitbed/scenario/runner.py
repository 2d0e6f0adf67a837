"""Run a scenario on the real testbed: nodes up on the base link, the timeline thread changing the link live,
one inference after another through the same session (or its successors after a timeout), every record
annotated with where on the timeline it ran.

Output folder (docs/SCENARIOS.md): `records.jsonl` (one metrics record per inference + a `scenario` object),
`warmup.jsonl`, `link_events.jsonl` (every applied change with its monotonic times), `scenario.json` (the
resolved scenario and the testbed), `timeline.png`, `summary.md`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitbed.scenario.spec import Scenario, ScenarioError
from splitbed.scenario.timeline import AppliedEvent, Timeline, direction_capacity, uplink_capacity

log = logging.getLogger(__name__)
#: Deadline of a warm-up inference: building a sub-model on both nodes takes seconds (VGG16 on 2 cores: ~10 s).
WARMUP_DEADLINE_S = 120.0


@dataclass
class ScenarioResult:
    scenario: Scenario
    out_dir: Path
    t0_ns: int
    rows: list[dict[str, Any]]
    warmup_rows: list[dict[str, Any]]
    link_events: list[dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)   # link changes that failed, ...

    @property
    def inferences(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("record_type") == "inference"]


def run(scenario: Scenario, out_dir: str | Path, *, backend: str | None = None, weights: str | None = None,
        on_row: Callable[[dict[str, Any]], None] | None = None, testbed_options: dict[str, Any] | None = None,
        testbed: Any = None) -> ScenarioResult:
    """Run `scenario` and write its results into `out_dir` (created; existing result files are replaced).

    `testbed`: a running splitbed.testbed.Testbed to use instead of starting one (its link is set to the
    scenario's base profile first; it must offer the workload's model); it is left running."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = scenario.workload
    options = dict(testbed_options or {})
    if work.adaptive:
        options.setdefault("warmup_partition", _probe_arms(scenario)[0].partition)
    elif "warmup_partition" not in options:
        options["warmup_partition"] = work.partition
    rows: list[dict[str, Any]] = []
    warmup_rows: list[dict[str, Any]] = []
    with _testbed(scenario, testbed, backend, weights, options) as bed:
        setup = {"scenario": scenario.to_dict(), "testbed": bed.describe()}
        with (out / "warmup.jsonl").open("w") as warm_file:
            for row in _warm_up(scenario, bed):
                warmup_rows.append(row)
                warm_file.write(json.dumps(row, default=str) + "\n")
        workload = _WorkloadState(scenario.workload.input_size)
        timeline = Timeline(scenario.events, bed.update_link, workload.change)
        t0 = timeline.start()
        try:
            with (out / "records.jsonl").open("w") as records_file:
                for row in _inferences(scenario, bed, t0, workload):
                    rows.append(row)
                    records_file.write(json.dumps(row, default=str) + "\n")
                    records_file.flush()
                    if on_row is not None:
                        on_row(row)
        finally:
            timeline.stop()
        applied = timeline.applied
    end_ns = max([_span(r)[1] for r in rows] + [t0])
    for row in rows:
        row["scenario"].update(_overlaps(row, applied, end_ns, scenario))
    link_events = [a.to_dict(t0) for a in applied]
    result = ScenarioResult(scenario, out, t0, rows, warmup_rows, link_events,
                            problems=[f"link change {a.event.label!r} at {a.event.at_s:g} s failed: {a.error}"
                                      for a in applied if a.error])
    not_reached = [e for e in scenario.events if e not in [a.event for a in applied]]
    result.problems += [f"link change {e.label!r} at {e.at_s:g} s was not reached (the workload ended first)"
                        for e in not_reached]
    _write(result, setup)
    return result


@contextmanager
def _testbed(scenario: Scenario, given: Any, backend: str | None, weights: str | None,
             options: dict[str, Any]) -> Iterator[Any]:
    """A testbed on the scenario's base link: the given one (link reset, left running) or a new one."""
    if given is not None:
        if scenario.workload.model not in given.models:
            raise ScenarioError(f"the given testbed offers {list(given.models)}, not {scenario.workload.model}")
        devices = (getattr(given, "ue_device", None), getattr(given, "edge_device", None))
        if devices != (scenario.ue_device, scenario.edge_device):
            raise ScenarioError(f"the given testbed emulates UE {devices[0]}, edge {devices[1]}; the scenario asks "
                                f"for UE {scenario.ue_device}, edge {scenario.edge_device}")
        given.update_link(scenario.base)
        yield given
        return
    from splitbed.testbed import Testbed

    with Testbed(scenario.base, backend=backend or scenario.backend, models=[scenario.workload.model],
                 weights=weights or scenario.workload.weights, ue_device=scenario.ue_device,
                 edge_device=scenario.edge_device, **options) as bed:
        yield bed


def _probe_arms(scenario: Scenario) -> list[Any]:
    from splitbed.models import registry
    from splitbed.models.errors import ModelError
    from splitbed.nodes.adaptive import PolicyConfig, PolicyError, arms_for

    try:
        config = PolicyConfig.from_dict(scenario.policy)
        return arms_for(registry.get(scenario.workload.model), config) * config.probe_repetitions
    except (PolicyError, ModelError) as exc:
        raise ScenarioError(f"{scenario.source}: [policy] {exc}") from None


class _WorkloadState:
    """What the timeline changes in the workload (the input size), read by the inference loop."""

    def __init__(self, input_size: tuple[int, int] | None) -> None:
        self.input_size = input_size

    def change(self, event: Any) -> None:
        self.input_size = event.input_size


def _job(scenario: Scenario, index: int, tags: dict[str, Any],
         input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    work = scenario.workload
    job: dict[str, Any] = {"model": work.model, "partition": work.partition, "compression": work.compression,
                           "encoding": work.encoding, "image": work.images[index % len(work.images)],
                           "result_mode": work.result_mode, "deadline_s": work.deadline_s,
                           "tags": dict(tags, scenario=scenario.name)}
    if work.adaptive:
        job["policy"] = scenario.policy or {}
    if input_size is not None:
        job["input_size"] = list(input_size)
    return job


def _warm_up(scenario: Scenario, bed: Any) -> list[dict[str, Any]]:
    """Before the clock starts. Fixed partition: one inference at every other input size the timeline will use,
    then one at the workload's own, so that building a sub-model (on both nodes, seconds) never stalls the
    timeline. Adaptive: one inference per probe (the policy measures every arm on the live base link), so the
    timeline begins with informed decisions. Warm-up jobs get WARMUP_DEADLINE_S: a build must not count against
    the workload's deadline. A refused warm-up job stops the scenario."""
    from splitbed.testbed import JobRefusedError

    if not scenario.workload.adaptive:
        from splitbed.models import registry

        initial = scenario.workload.input_size or registry.get(scenario.workload.model).target_size
        # the initial size last: the timeline starts on the sub-models and AIPS its first inference needs
        others = [e.input_size for e in scenario.events if e.input_size not in (None, initial)]
        sizes = dict.fromkeys([*others, initial])
        rows = []
        for index, size in enumerate(sizes):
            job = _job(scenario, index, {"warmup": True, "input_size": list(size)}, size)
            job["deadline_s"] = max(WARMUP_DEADLINE_S, scenario.workload.deadline_s or 0)
            try:
                rows += bed.run(job)
            except JobRefusedError as exc:
                raise ScenarioError(f"the warm-up at input size {size} was refused: {exc.code}: {exc.detail}") \
                    from None
        return rows
    rows = []
    for index in range(len(_probe_arms(scenario))):
        try:
            job = _job(scenario, index, {"warmup": True, "inference": index}, scenario.workload.input_size)
            job["deadline_s"] = max(WARMUP_DEADLINE_S, scenario.workload.deadline_s or 0)
            records = bed.run(job)
        except JobRefusedError as exc:
            raise ScenarioError(f"the warm-up inference was refused: {exc.code}: {exc.detail}") from None
        rows += records
    return rows


def _inferences(scenario: Scenario, bed: Any, t0: int, workload: _WorkloadState) -> Any:
    """Yield one annotated row per inference until the workload's count or duration is reached."""
    from splitbed.testbed import JobRefusedError

    work = scenario.workload
    index = 0
    while work.inferences is None or index < work.inferences:
        if work.duration_s is not None and time.monotonic_ns() - t0 >= work.duration_s * 1e9:
            return
        submitted = time.monotonic_ns()
        try:
            records = bed.run(_job(scenario, index, {"inference": index}, workload.input_size))
        except JobRefusedError as exc:
            if index == 0:
                raise ScenarioError(f"the first inference was refused: {exc.code}: {exc.detail}") from None
            # e.g. no new session could be set up during an outage: a row that says so, and the scenario goes on
            records = [{"record_type": "job_error", "status": "error", "partition_name": None,
                        "error": {"code": exc.code, "message": exc.detail, "fatal": True, "where": "local"}}]
        returned = time.monotonic_ns()
        for record in records:
            record["scenario"] = _annotation(record, index, t0, submitted, returned)
            yield record
        index += 1
        if work.gap_ms > 0:
            time.sleep(work.gap_ms / 1e3)


def _annotation(record: dict[str, Any], index: int, t0: int, submitted: int, returned: int) -> dict[str, Any]:
    stamps = record.get("timestamps_ns") or {}
    first, last = stamps.get("local_start"), stamps.get("local_end")
    start = first if isinstance(first, int) else submitted
    end = last if isinstance(last, int) else returned
    return {"index": index, "start_ns": start, "end_ns": end, "t_start_s": (start - t0) / 1e9,
            "t_end_s": (end - t0) / 1e9, "timing_source": "record" if isinstance(last, int) else "orchestrator"}


def _span(row: dict[str, Any]) -> tuple[int, int]:
    return int(row["scenario"]["start_ns"]), int(row["scenario"]["end_ns"])


def _overlaps(row: dict[str, Any], applied: list[AppliedEvent], end_ns: int, scenario: Scenario) -> dict[str, Any]:
    """Where on the timeline the inference ran: the link in force at its start, changes during it, and how long
    it overlapped an outage (`outage_overlap_ms`) and ran on after the link came back (`after_link_return_ms`)."""
    start, end = _span(row)
    in_force = None
    for item in applied:
        if item.start_ns <= start:
            in_force = item
    during = [a for a in applied if start < a.start_ns <= end]
    overlap_ns = 0
    outage_start: int | None = None
    returns = []
    for item in applied:
        if item.event.kind == "outage_start":
            outage_start = item.start_ns
        elif item.event.kind == "outage_end" and outage_start is not None:
            overlap_ns += max(0, min(end, item.start_ns) - max(start, outage_start))
            if start < item.start_ns <= end:
                returns.append(item.start_ns)
            outage_start = None
    if outage_start is not None:  # the run ended inside an outage
        overlap_ns += max(0, min(end, end_ns) - max(start, outage_start))
    return {"link_profile": scenario.base.name if in_force is None else in_force.event.profile.name,
            "uplink_capacity_mbit": direction_capacity(scenario.base.uplink) if in_force is None
            else uplink_capacity(in_force.event),
            "link_changes_during": [a.event.label for a in during],
            "outage_overlap_ms": overlap_ns / 1e6,
            "after_link_return_ms": (end - returns[-1]) / 1e6 if returns else None}


def _write(result: ScenarioResult, setup: dict[str, Any]) -> None:
    from splitbed.scenario.plot import timeline_png
    from splitbed.scenario.summary import summary_markdown

    out = result.out_dir
    with (out / "records.jsonl").open("w") as handle:  # again, now with the timeline overlaps
        for row in result.rows:
            handle.write(json.dumps(row, default=str) + "\n")
    with (out / "link_events.jsonl").open("w") as handle:
        for event in result.link_events:
            handle.write(json.dumps(event) + "\n")
    (out / "scenario.json").write_text(json.dumps(dict(setup, t0_ns=result.t0_ns, problems=result.problems),
                                                  indent=2, default=str))
    result.files = {"records": out / "records.jsonl", "warmup": out / "warmup.jsonl",
                    "link_events": out / "link_events.jsonl", "scenario": out / "scenario.json"}
    result.files["timeline"] = timeline_png(result.scenario, result.rows, result.link_events,
                                            out / "timeline.png")
    (out / "summary.md").write_text(summary_markdown(result.scenario, result.rows, result.link_events,
                                                     result.problems))
    result.files["summary"] = out / "summary.md"
