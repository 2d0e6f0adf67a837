"""`splitbed format decode / profiles` on the committed vectors."""

from __future__ import annotations

import json

from format_vectors import GOLDEN, HOSTILE, load
from typer.testing import CliRunner

from splitbed.cli import app

RUNNER = CliRunner()


def test_decode_golden_stream_as_json() -> None:
    result = RUNNER.invoke(app, ["format", "decode", "--json", str(GOLDEN / "multi_tensor.bin")])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    _, doc = load(GOLDEN, "multi_tensor")
    assert [r["event"] for r in rows] == [e["event"] for e in doc["events"]]
    assert rows[1]["payload_sizes"] == doc["events"][1]["payload_sizes"]


def test_decode_exit_status_says_whether_errors_were_reported() -> None:
    """The lifetime vector holds one rejected AIPS (an error event), so decode exits 1 after all events."""
    result = RUNNER.invoke(app, ["format", "decode", "--json", str(GOLDEN / "lifetime.bin")])
    assert result.exit_code == 1
    _, doc = load(GOLDEN, "lifetime")
    assert len(result.output.splitlines()) == len(doc["events"])


def test_decode_hostile_stream_reports_the_error_and_fails() -> None:
    result = RUNNER.invoke(app, ["format", "decode", str(HOSTILE / "zstd_bomb_declared.bin")])
    assert result.exit_code == 1
    assert "decompression_failed" in result.output and "67108864" in result.output


def test_profiles_table_lists_every_profile() -> None:
    result = RUNNER.invoke(app, ["format", "profiles"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("none", "fp16", "bf16", "int8", "zstd", "lz4", "shuffle-zstd", "int8-zstd"):
        assert f" {name} " in result.output
