"""The results file (splitbed.sweep.store): one flushed line per record, a torn last line is set aside (not
lost) before appending, unreadable lines are skipped with their line numbers, completion counts only good
non-warm-up measurements of a point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splitbed.sweep import store as store_module
from splitbed.sweep.store import ResultsError, ResultStore, completed_counts, read_records
from splitbed.sweep.summary import summarise


def _record(point: str, status: str = "ok", warmup: bool = False, **extra: object) -> dict:
    tags: dict = {"point": point}
    if warmup:
        tags["warmup"] = True
    return {"record_type": "inference", "status": status, "tags": tags, "model": "m", "partition_name": "p",
            "encoding": "tlv", **extra}


def test_append_writes_one_line_per_record_visible_before_close(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as results:
        results.append(_record("a", e2e_latency_ms=1.5))
        lines = (tmp_path / "results.jsonl").read_text().splitlines()  # flushed, store still open
        assert [json.loads(line)["e2e_latency_ms"] for line in lines] == [1.5]
        results.append(_record("a"))
    assert len(read_records(tmp_path).records) == 2


def test_completed_counts_good_measurements_only(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as results:
        for record in (_record("a"), _record("a"), _record("a", warmup=True), _record("a", status="error"),
                       _record("b"), {"record_type": "job_done", "tags": {"point": "a"}}):
            results.append(record)
        assert results.completed("a") == 2 and results.errors["a"] == 1 and results.completed("b") == 1
    reopened = ResultStore(tmp_path).open()
    try:
        assert reopened.completed("a") == 2 and reopened.completed("c") == 0
    finally:
        reopened.close()


def test_torn_last_line_is_moved_aside_and_appending_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    good = json.dumps(_record("a"))
    path.write_text(good + "\n" + good[:37])  # killed mid-write
    with ResultStore(tmp_path) as results:
        assert results.torn_bytes == 37 and results.completed("a") == 1
        results.append(_record("a"))
    assert path.read_text().splitlines() == [good, json.dumps(_record("a"), separators=(",", ":"))]
    assert (tmp_path / "results.jsonl.torn").read_text() == good[:37] + "\n"


def test_a_file_that_is_all_torn_keeps_its_bytes(tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text('{"record_type": "infer')
    with ResultStore(tmp_path) as results:
        assert results.torn_bytes == len('{"record_type": "infer')
    assert (tmp_path / "results.jsonl").read_text() == ""
    assert (tmp_path / "results.jsonl.torn").read_text().startswith('{"record_type"')


def test_unreadable_lines_are_skipped_with_line_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_LINE_BYTES", 200)
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\nnot json\n[1, 2]\n' + b'{"pad": "' + b"x" * 500 + b'"}\n\n\xff\xfe\n{"b": 2}\n')
    result = read_records(path)
    assert result.records == [{"a": 1}, {"b": 2}]
    assert [number for number, _ in result.skipped] == [2, 3, 4, 6]
    assert "longer than 200" in result.skipped[2][1]


def test_missing_results_are_a_specific_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no results file"):
        read_records(tmp_path)
    with pytest.raises(ResultsError, match="not open"):
        ResultStore(tmp_path).append({})


def test_completed_counts_reads_without_creating_or_repairing(tmp_path: Path) -> None:
    assert completed_counts(tmp_path / "none") == {} and not (tmp_path / "none").exists()
    path = tmp_path / "results.jsonl"
    torn = json.dumps(_record("a")) + "\n" + json.dumps(_record("a", warmup=True)) + "\n" + '{"rec'
    path.write_text(torn)
    assert completed_counts(tmp_path) == {"a": 1}
    assert path.read_text() == torn and not (tmp_path / "results.jsonl.torn").exists()


def test_records_we_cannot_have_written_and_repeats_are_skipped_with_the_reason(tmp_path: Path) -> None:
    """A NaN record used to become an `unknown/None` row of summary.csv, and a repeated line raised a point's n
    above its repetitions, silently."""
    good = _record("a", session_id="s1", session_inference_index=0, started_at_utc="t0", repetition=0)
    other = _record("a", session_id="s1", session_inference_index=1, started_at_utc="t1", repetition=1)
    lines = [json.dumps(good), json.dumps(other), json.dumps(good),
             '{"record_type": "inference", "status": "ok", "e2e_latency_ms": NaN}',
             '{"record_type": "inference", "status": "ok", "e2e_latency_ms": 3.0}', "NaN"]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    read = read_records(tmp_path)
    assert read.records == [good, other]
    reasons = dict(read.skipped)
    assert reasons[3] == "a repeat of line 1 (same session, inference index, start time and repetition)"
    assert "NaN in a record" in reasons[4] and "without a string 'model'" in reasons[5] and 6 in reasons
    summaries = summarise(read.records)
    assert [(s.model, s.n) for s in summaries] == [("m", 2)]
    assert completed_counts(tmp_path)["a"] == 2
