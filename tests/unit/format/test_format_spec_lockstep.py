"""docs/FORMAT.md and splitbed.format say the same thing: tables, limits and the worked example are compared."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from format_vectors import GOLDEN, HOSTILE, load, vector_names

from splitbed.format import PROFILES, DType, EndReason, ErrorCode, UnitType
from splitbed.format.errors import FATAL_CODES
from splitbed.format.limits import (
    DEFAULT_MAX_DECODED_SIZE,
    DEFAULT_MAX_UNIT_SIZE,
    FORMAT_VERSION,
    MAX_RANK,
    MAX_TENSORS,
    PAYLOAD_ALIGNMENT,
)

SPEC = (Path(__file__).resolve().parents[3] / "docs" / "FORMAT.md").read_text()
NOT_ON_THE_WIRE = {"value_out_of_range", "array_mismatch", "bad_field", "decoder_broken", "stream_ended",
                   "json_too_large", "json_invalid"}


def table(header_start: str) -> list[list[str]]:
    """Rows (cells stripped, `\\|` unescaped) of the Markdown table whose header row starts with the text."""
    lines = SPEC.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for row in lines[index + 2:]:
                if not row.startswith("|"):
                    break
                cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
                rows.append([c.strip().replace("\\|", "|") for c in cells])
            return rows
    raise AssertionError(f"no table starting with {header_start!r} in docs/FORMAT.md")


def test_dtype_table() -> None:
    rows = table("| code | dtype |")
    assert {int(r[0]): (r[1], int(r[2])) for r in rows} == {d.value: (d.name.lower(), d.itemsize) for d in DType}


def test_profile_table() -> None:
    rows = table("| id | name | transform |")
    assert [int(r[0]) for r in rows] == sorted(PROFILES)
    for r in rows:
        profile = PROFILES[int(r[0])]
        assert r[1] == profile.name
        assert r[4] == ("yes" if profile.lossless else "no")
        documented = set(DType) if r[5] == "all" else {DType[name.upper()] for name in r[5].split(", ")}
        assert documented == profile.transform.dtypes
        assert int(r[6]) == profile.param_length
        assert r[7] == profile.error_bound
        assert r[3] == profile.coder.name


def test_unit_type_table() -> None:
    rows = table("| type | unit |")
    assert [r[0] for r in rows] == ["0", "1", "2", "3-255"]
    assert [int(r[0]) for r in rows[:3]] == [t.value for t in UnitType]


def test_error_code_table() -> None:
    rows = table("| error code |")
    assert {r[0] for r in rows} | NOT_ON_THE_WIRE == {c.value for c in ErrorCode}
    for r in rows:
        assert r[2] == ("no" if ErrorCode(r[0]) in FATAL_CODES else "yes"), r
    for code in NOT_ON_THE_WIRE:
        assert f"`{code}`" in SPEC


def test_end_reason_table() -> None:
    assert {r[0] for r in table("| reason | when |")} == {r.value for r in EndReason}


@pytest.mark.parametrize("name", vector_names(HOSTILE) + vector_names(GOLDEN))
def test_error_effects_match_the_vectors(name: str) -> None:
    """Column "effect on the active AIPS": an error ends the AIPS with the documented reason, or not at all."""
    effects = {r[0]: r[3] for r in table("| error code |")}
    _, doc = load(HOSTILE if (HOSTILE / f"{name}.bin").exists() else GOLDEN, name)
    events = doc["events"]
    for index, event in enumerate(events):
        if event["event"] != "FormatErrorEvent" or not event["recoverable"]:
            continue
        after = events[index + 1] if index + 1 < len(events) else None
        match = re.fullmatch(r"ends \((\w+)\)", effects[event["code"]])
        if match:
            assert after == {"event": "AipsEnded", "aips_id": after and after.get("aips_id"),
                             "reason": match.group(1)}, (name, event)
        else:
            assert not (after and after["event"] == "AipsEnded"), (name, event)


def test_limits_are_stated() -> None:
    assert f"MUST be {FORMAT_VERSION} (`FORMAT_VERSION`)" in SPEC
    assert f"1 .. {MAX_TENSORS} (`MAX_TENSORS`)" in SPEC
    assert f"0 .. {MAX_RANK} (`MAX_RANK`)" in SPEC
    assert f"multiple of {PAYLOAD_ALIGNMENT}" in SPEC
    assert f"max unit size** (reference default {DEFAULT_MAX_UNIT_SIZE // 2**20} MiB)" in SPEC
    assert f"max decoded size** (reference default {DEFAULT_MAX_DECODED_SIZE // 2**20} MiB)" in SPEC


def test_worked_example_is_the_golden_file() -> None:
    section = SPEC[SPEC.index("## 11 Worked example"):SPEC.index("## 12 ")]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    hexdigits = "".join("".join(line.split("|", 1)[0].split()) for line in block.splitlines())
    data, _ = load(GOLDEN, "single_raw")
    assert bytes.fromhex(hexdigits) == data
