"""`splitbed advise` as users run it: real compute timed in this process, a trace-driven profile, the table and
the JSON file (no testbed: `--measure` is covered by test_sweep_advise.py)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from splitbed.cli import app
from tests.integration.sweep.conftest import MODEL, WEIGHTS

PARTITIONS = ["input_layer", "block_13_project_BN", "predictions"]


def test_advise_on_the_driving_trace_prints_the_ranking_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "advise.json"
    args = ["advise", "--model", MODEL, "--profile", "5g-mmwave-driving", "--weights", WEIGHTS, "--repeats", "3",
            "--json", str(out)]
    for name in PARTITIONS:
        args += ["--partition", name]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "68.1 Mbit/s at the median of 7200 start phases; mean 156.4" in " ".join(result.output.split())
    assert "Predicted best partition by latency:" in result.output
    payload = json.loads(out.read_text())
    uplink = payload["link"]["uplink"]
    assert uplink["trace"]["source"].endswith("mmwave-driving.tput") and uplink["trace"]["period_ms"] == 1_800_000
    predictions = payload["predictions"]
    assert sorted(p["partition"] for p in predictions) == sorted(PARTITIONS)
    assert [p["e2e_ms"] for p in predictions] == sorted(p["e2e_ms"] for p in predictions)  # best first
    for p in predictions:
        assert p["e2e_ms"] == p["local_ms"] + p["uplink_ms"] + p["remote_ms"] + p["downlink_ms"]
    big = next(p for p in predictions if p["partition"] == "input_layer")
    assert big["uplink_ms"] > 77.0  # 602 kB at the median start phase: ~74 ms of frames + 6.95 ms; the mean rate ~39


def test_advise_refuses_an_unknown_partition_with_a_clear_message() -> None:
    result = CliRunner().invoke(app, ["advise", "--model", MODEL, "--profile", "lte", "--weights", WEIGHTS,
                                      "--partition", "no_such_layer"])
    assert result.exit_code == 2 and "no_such_layer" in result.output
