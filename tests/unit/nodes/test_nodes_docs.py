"""docs/METRICS.md and docs/PROTOCOL.md stay in lockstep with the code that produces the records and units."""

from __future__ import annotations

import re
from pathlib import Path

from splitbed.nodes.clock import ClockRecord
from splitbed.nodes.metrics import RECORD_FIELDS
from splitbed.nodes.protocol import MsgType
from splitbed.nodes.resources import ResourceFigures

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _section(text: str, start: str, end: str | None) -> str:
    begin = text.index(start)
    return text[begin:text.index(end, begin)] if end else text[begin:]


def _first_column_names(section: str) -> list[str]:
    """Backticked names in the first column of every table row of `section`."""
    names = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names += re.findall(r"`([a-z0-9_]+)`", first)
    return names


def test_every_record_field_is_documented_once() -> None:
    text = (DOCS / "METRICS.md").read_text()
    documented = _first_column_names(_section(text, "## Fields", "## Sections"))
    assert sorted(documented) == sorted(RECORD_FIELDS)
    assert len(documented) == len(set(documented))


def test_resource_and_clock_fields_are_documented() -> None:
    text = (DOCS / "METRICS.md").read_text()
    assert set(_first_column_names(_section(text, "### resources", "Peak memory"))) == \
        set(ResourceFigures.__annotations__)
    assert set(_first_column_names(_section(text, "### clock", "Decision:"))) == set(ClockRecord.__annotations__)


def test_protocol_type_table_matches_the_code() -> None:
    text = (DOCS / "PROTOCOL.md").read_text()
    rows = re.findall(r"^\| 0x([0-9A-F]{2}) \| ([A-Z_]+) \|", text, flags=re.MULTILINE)
    assert {(int(code, 16), name) for code, name in rows} == {(int(t), t.name) for t in MsgType}


def test_protocol_limits_match_the_defaults() -> None:
    from splitbed.nodes.protocol import DEFAULT_MAX_UNIT_BYTES, MAX_CONTROL_BYTES
    from splitbed.nodes.remote import RemoteConfig

    text = (DOCS / "PROTOCOL.md").read_text()
    cfg = RemoteConfig()
    assert DEFAULT_MAX_UNIT_BYTES == 64 << 20 and "| `--max-unit-bytes` | 64 MiB |" in text
    assert MAX_CONTROL_BYTES == 1 << 20 and "| (fixed) | 1 MiB |" in text
    for option, value in (("config-timeout", cfg.config_timeout_s), ("read-timeout", cfg.read_timeout_s),
                          ("idle-timeout", cfg.idle_timeout_s), ("shutdown-grace", cfg.shutdown_grace_s)):
        assert f"| `--{option}` | {value:g} s |" in text
    assert f"| `--max-sessions` | {cfg.max_sessions} |" in text
