"""The report's repeatability section (splitbed.report.repeatability): per point the e2e CV beside the host-speed
reference's CV per node CPU, where its runs came from (right before the inferences, or bursts around a paced
stream) and how many, the spread note where it applies, and `-` for records made without the reference."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from splitbed.report import get_budget
from splitbed.report.provenance import provenance
from splitbed.report.render import ReportContent, render_html, render_markdown
from splitbed.report.repeatability import HEADERS, repeatability_tables
from splitbed.report.tables import best_table
from splitbed.sweep.hostspeed import AFTER_STREAM, BEFORE_STREAM, BURST_RUNS, burst_record
from splitbed.sweep.summary import summarise
from tests.unit.sweep.test_sweep_hosts import _record

CPU = "Test CPU 1"
PACED = "periodic:1/queue:1"
EDGE = [30.0, 31.0, 29.0, 30.5, 29.5, 30.0, 31.5, 28.5, 30.0, 39.0]  # the edge's reference, slower before the last


def _run(cpu_ms: float) -> dict[str, Any]:
    return {"cpu_ms": cpu_ms, "wall_ms": cpu_ms, "cpus": [0], "start_ns": 1, "end_ns": 2}


def _records() -> list[dict[str, Any]]:
    """Point a: back to back, a run before each inference, e2e following the edge's reference (spread note);
    point b: paced, no room between frames, so bursts before and after its stream only; point c: records made
    before the reference existed (no host_speed at all)."""
    records = []
    for k, ms in enumerate(EDGE):
        record = _record("a", "block_3", 3, 20.0 * ms, "alpha", CPU, index=k)
        record["host_speed"] = {"when": "right before", "edge": _run(ms), "ue": _run(30.0 + 0.1 * k)}
        records.append(record)
    for k in range(6):
        record = _record("b", "block_13", 13, 300.0 + k, "alpha", CPU, index=20 + k)
        record["workload"] = {"spec": PACED, "frame": k}
        records.append(record)
    host = records[-1]["host"]
    for when, base in ((BEFORE_STREAM, 30.0), (AFTER_STREAM, 33.0)):
        block = {"when": when, "edge": {"asked_cpus": [1], "runs": [_run(base + i) for i in range(BURST_RUNS)]},
                 "ue": {"asked_cpus": [0], "runs": [_run(base) for _ in range(BURST_RUNS)]}}
        records.append(burst_record("b", 0, block, host))
    records += [_record("c", "block_16", 16, 500.0 + k, "alpha", CPU, index=40 + k) for k in range(6)]
    return records


def _cv(values: list[float]) -> float:
    return 100 * statistics.stdev(values) / statistics.fmean(values)


def test_each_point_shows_its_e2e_cv_the_reference_per_cpu_and_where_its_runs_came_from() -> None:
    tables = repeatability_tables(summarise(_records()))
    rows = {row[0]: row for table in tables for row in table.rows}
    assert all(t.headers == HEADERS for t in tables)
    a = rows["block_3 (3)"]
    assert a[1] == "10" and a[2] == f"{_cv([20.0 * ms for ms in EDGE]):.2f} %"
    assert a[4] == "10: 10 between the inferences"
    assert a[5] == f"{_cv(EDGE):.2f} % ({statistics.median(EDGE):.1f} ms)"
    b = rows["block_13 (13)"]
    edge = [30.0 + i for i in range(BURST_RUNS)] + [33.0 + i for i in range(BURST_RUNS)]
    assert b[4] == f"{2 * BURST_RUNS}: {2 * BURST_RUNS} in bursts before and after the stream"
    assert b[5] == f"{_cv(edge):.2f} % ({statistics.median(edge):.1f} ms)"
    c = rows["block_16 (16)"]
    assert c[4] == "none" and c[5] == c[6] == "-" and c[2] != "-"  # old records: e2e CV, no host figures
    [a_table] = [t for t in tables if any(r[0] == "block_3 (3)" for r in t.rows)]
    [spread] = [n for n in a_table.notes if n.startswith("Spread block_3:")]
    assert f"host speed varied {_cv(EDGE):.1f} % (reference workload on the edge's CPU, 10 runs: 10 between the " \
           "inferences)" in spread
    [b_table] = [t for t in tables if any(r[0] == "block_13 (13)" for r in t.rows)]
    assert PACED in b_table.title and not any(n.startswith("Spread") for n in b_table.notes)  # e2e CV under 3 %


def test_the_report_has_the_section_in_markdown_and_html(tmp_path: Path) -> None:
    """Both writers render the section (build_report wires it: tests/integration/sweep/test_sweep_report.py, on a
    real sweep; here without the plots, which take seconds)."""
    records = _records()
    summaries = summarise(records)
    budget = get_budget(None)
    content = ReportContent(title="t", source="results.jsonl", budget=budget, provenance=provenance(records),
                            best=best_table(summaries, budget), tables=[], plots=[],
                            repeatability_tables=repeatability_tables(summaries))
    text = render_markdown(content)
    assert "## Repeatability and host speed" in text
    assert "| " + " | ".join(HEADERS) + " |" in text
    assert f"| {2 * BURST_RUNS}: {2 * BURST_RUNS} in bursts before and after the stream |" in text
    assert "_Spread block_3: host speed varied" in text
    page = render_html(content, tmp_path)
    assert '<h2 id="repeatability">' in page and "10: 10 between the inferences" in page
