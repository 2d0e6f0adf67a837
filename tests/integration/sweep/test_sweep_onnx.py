"""A sweep of a user's `.onnx` file end to end with captures (docs/MODELS.md, "ONNX in the nodes, sweeps and
records"): the CLI as a user runs it, ONNX Runtime on both nodes, pcaps kept per point, and each record's traffic
measured from the capture agreeing with the session bytes the record counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from splitbed.pytest_plugin import requires

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_a_sweep_of_an_onnx_file_runs_with_captures(tmp_path: Path) -> None:
    requires("netns")
    from splitbed.models import RandomWeightsWarning, load
    from splitbed.models.onnx.convert import converted

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        path = converted(load("mobilenet_v2", "random:0")).path
    out = tmp_path / "sweep"
    env = {**os.environ, "SPLITBED_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "splitbed.cli", "sweep", "-m", str(path), "-p", "100",
                           "--ue-device", "host", "--profile", "5g-split-ai", "--repetitions", "2",
                           "--no-report", "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    measured = [r for r in records if r.get("record_type") == "inference" and not r["tags"].get("warmup")]
    assert len(measured) == 2 and all(r["status"] == "ok" for r in measured)
    for record in measured:
        assert record["ue_runtime"]["name"] == record["edge_runtime"]["name"] == "onnxruntime"
        traffic = record["traffic"]
        assert traffic["source"].startswith("measured: packet captures")
        uplink = traffic["uplink"]
        assert uplink["payload_bytes"] == record["uplink_bytes"] and uplink["wire_bytes"] > uplink["payload_bytes"]
    pcaps = sorted(p.name.split("-")[0] for p in (out / "captures").rglob("*.pcap"))
    assert pcaps == ["edge", "ue"]
