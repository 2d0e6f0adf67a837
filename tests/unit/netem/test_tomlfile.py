"""Deeply nested TOML (a 1 KB file nested 500 deep used to raise a ~1,100-line RecursionError traceback) gets
one clear line from every loader and every command that reads such a file, through netem.tomlfile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from netem import tomlfile
from netem.errors import ProfileError
from netem.profile import LinkProfile
from splitbed.scenario import spec
from splitbed.scenario.spec import ScenarioError

DEEP_ARRAY = "x = " + "[" * 500 + "]" * 500 + "\n"  # beyond Python's recursion limit inside tomllib
DEEP_TABLE = "x = " + "{a = " * 40 + "1" + "}" * 40 + "\n"  # parses, but deeper than MAX_NESTING


@pytest.mark.parametrize("text", [DEEP_ARRAY, DEEP_TABLE], ids=["array-500", "table-40"])
def test_loads_refuses_deep_nesting_in_one_line(text: str) -> None:
    with pytest.raises(tomlfile.TomlError, match="nested") as caught:
        tomlfile.loads(text)
    assert "\n" not in str(caught.value)


def test_loads_keeps_ordinary_documents_and_reports_bad_ones() -> None:
    assert tomlfile.loads(b"a = [[1, 2], [3]]\n[t]\nb = {c = [1]}\n") == {"a": [[1, 2], [3]], "t": {"b": {"c": [1]}}}
    tomlfile.check_nesting({"a": [[[1]]]}, limit=4)
    with pytest.raises(tomlfile.TomlError, match="not UTF-8"):
        tomlfile.loads(b"\xff = 1")
    with pytest.raises(tomlfile.TomlError, match="not valid TOML"):
        tomlfile.loads("a = [")


def test_profile_and_scenario_loaders_say_it_in_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text(DEEP_ARRAY)
    with pytest.raises(ProfileError, match=r"deep.toml is not usable: arrays or tables nested"):
        LinkProfile.load(deep)
    with pytest.raises(ScenarioError, match=r"deep.toml: not usable: arrays or tables nested"):
        spec.load(deep)


@pytest.mark.parametrize("argv", [
    ["-m", "netem.cli", "shell", "--profile", "{deep}", "--", "true"],
    ["-m", "splitbed.cli", "scenario", "check", "{deep}"],
    ["-m", "splitbed.cli", "sweep", "--profile", "{deep}", "--dry-run", "--out", "{out}"],
], ids=["netem-shell", "scenario-check", "sweep-dry-run"])
def test_commands_exit_2_with_one_line(tmp_path: Path, argv: list[str]) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text(DEEP_ARRAY)
    args = [a.format(deep=deep, out=tmp_path / "out") for a in argv]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    assert "nested" in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) <= 6, done.stderr  # typer's usage box at most
