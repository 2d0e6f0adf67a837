"""The README's first screen: the five-line picture of how an inference flows (UE head, format, emulated link,
edge tail, record) within the first 25 lines, then the Quickstart (exactly `make sweep`, `make test`: see
test_project.py); the long doctor table lives in docs/INSTALL.md; the README's sweep table fits the 80 columns the sweep prints
in."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
FIRST_SCREEN = 25


def test_the_first_screen_shows_how_an_inference_flows() -> None:
    head = "\n".join(README.splitlines()[:FIRST_SCREEN])
    block = re.search(r"```text\n(.*?)```", head, flags=re.S)
    assert block, "no picture in the README's first screen"
    lines = block.group(1).strip().splitlines()
    assert len(lines) == 5
    for line, (stage, *words) in zip(lines, [("UE", "head"), ("format", "TLV"), ("emulated link", "rate", "delay"),
                                               ("edge", "tail"), ("record", "delivery", "end-to-end")], strict=True):
        assert line.startswith(stage) and all(w in line for w in words), line
    assert README.index("```text") < README.index("## Quickstart")


def test_the_doctor_table_lives_in_install_md() -> None:
    install = (REPO / "docs" / "INSTALL.md").read_text()
    assert "┃ probe" not in README and "must-have: the testbed cannot give correct numbers" not in README
    assert "┃ probe" in install and "realtime" in install and "docker_cgroup" in install


def test_the_readme_sweep_example_is_80_columns_wide() -> None:
    section = README[README.index("## Main job"):]
    block = re.search(r"```text\n(.*?)```", section, flags=re.S)
    assert block
    text = block.group(1)
    table = text[text.index("splitbed sweep: medians"):text.index("* = lowest median")]
    assert max(len(line) for line in table.splitlines()) <= 80  # the table; the warning and paths are one line each
    assert "encoding" in text and "carriage" not in text
