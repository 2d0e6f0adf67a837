"""`splitbed scenario run` end to end on a built-in scenario: its own testbed (started and removed by the
command), the files it promises, and nothing left behind. Slow: a second testbed start-up (~40 s)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from splitbed.cli import app

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _our_namespaces() -> set[str]:
    prefix = f"sb{os.getpid()}-"
    return {n for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else []) if n.startswith(prefix)}


def test_cli_runs_the_outage_builtin_and_writes_its_files(offline: None, tmp_path: Path) -> None:
    from splitbed.pytest_plugin import requires

    requires("root_or_userns", "netns")
    before = _our_namespaces()
    result = CliRunner().invoke(app, ["scenario", "run", "outage-3s", "--out", str(tmp_path), "--weights",
                                      "random:0"])
    assert result.exit_code == 0, result.output
    assert "written:" in result.output
    rows: list[dict[str, Any]] = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert rows and all(r["status"] == "ok" for r in rows)
    stalled = [r for r in rows if r["scenario"]["outage_overlap_ms"] > 0]
    assert len(stalled) == 1 and stalled[0]["scenario"]["after_link_return_ms"] is not None
    events = [json.loads(line) for line in (tmp_path / "link_events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["outage_start", "outage_end"] and all(e["error"] is None for e in events)
    assert (tmp_path / "timeline.png").read_bytes().startswith(b"\x89PNG")
    assert "## Inferences during outages" in (tmp_path / "summary.md").read_text()
    assert json.loads((tmp_path / "scenario.json").read_text())["scenario"]["name"] == "outage-3s"
    assert _our_namespaces() == before  # the command's testbed removed its namespaces
