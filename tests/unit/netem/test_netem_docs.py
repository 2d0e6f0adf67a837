"""docs/PROFILES.md carries exactly the table `netem profiles --markdown` prints from the profile files."""

from __future__ import annotations

from pathlib import Path

from netem.cli import profiles_markdown
from netem.profile import builtin_profiles

DOC = Path(__file__).resolve().parents[3] / "docs" / "PROFILES.md"


def test_profiles_doc_table_is_generated_from_the_files() -> None:
    text = DOC.read_text()
    begin, end = "<!-- BEGIN netem profiles --markdown -->\n", "<!-- END netem profiles --markdown -->"
    table = text[text.index(begin) + len(begin):text.index(end)]
    assert table == profiles_markdown(builtin_profiles()), "regenerate with: netem profiles --markdown"
