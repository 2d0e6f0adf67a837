"""docs/PROFILES.md carries exactly the table `netem profiles --markdown` prints from the profile files."""

from __future__ import annotations

from pathlib import Path

from netem.cli import profiles_markdown, tcp_markdown
from netem.profile import builtin_profiles
from netem.tcpcheck import read_measured, within_claim

DOC = Path(__file__).resolve().parents[3] / "docs" / "PROFILES.md"


def test_profiles_doc_table_is_generated_from_the_files() -> None:
    text = DOC.read_text()
    begin, end = "<!-- BEGIN netem profiles --markdown -->\n", "<!-- END netem profiles --markdown -->"
    table = text[text.index(begin) + len(begin):text.index(end)]
    assert table == profiles_markdown(builtin_profiles()), "regenerate with: netem profiles --markdown"


def test_tcp_doc_table_is_generated_from_the_profiles_and_the_stored_measurements() -> None:
    text = DOC.read_text()
    begin, end = "<!-- BEGIN netem profiles --tcp-markdown -->\n", "<!-- END netem profiles --tcp-markdown -->"
    table = text[text.index(begin) + len(begin):text.index(end)]
    assert table == tcp_markdown(builtin_profiles(), read_measured()), \
        "regenerate with: netem profiles --tcp-markdown (after netem tcp-check --write)"


def test_every_shaped_builtin_states_what_tcp_gets_and_every_stored_figure_meets_it() -> None:
    """Each built-in says what one TCP flow should reach (or, unshaped or trace-driven, why it claims none), and
    the measurement the document shows holds that claim within the tolerance (netem.tcpcheck)."""
    measured = read_measured()["measured"]
    for profile in builtin_profiles():
        assert profile.expected_tcp is not None, f"{profile.name} has no [expected_tcp] table"
        for which in ("uplink", "downlink"):
            direction, claim = profile.direction(which), profile.expected_tcp.direction(which)
            if direction.rate_mbit is not None and direction.trace is None:
                assert claim is not None, f"{profile.name} {which} is shaped but claims nothing for TCP"
                assert claim <= direction.rate_mbit * 1448 / 1514 * 1.0001, "TCP cannot beat the frame ceiling"
                figures = measured[profile.name][which]
                assert within_claim(figures["goodput_mbit"], claim), (profile.name, which, figures, claim)
            else:
                assert claim is None, f"{profile.name} {which} is not rate-shaped: no single TCP figure to claim"
            if direction.trace is not None:  # checked on a stretch of the trace without outages
                figures = measured[profile.name][which]
                assert within_claim(figures["goodput_mbit"], figures["expected_mbit"]), (profile.name, figures)
