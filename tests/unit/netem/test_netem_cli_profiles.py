"""`netem profiles`: the table and JSON come from the profile files (no root needed)."""

from __future__ import annotations

import json
import subprocess
import sys

from netem.cli import profile_rows
from netem.profile import LinkProfile, builtin_names, builtin_profiles


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netem.cli", *args], capture_output=True, text=True, timeout=60)


def test_profiles_json_is_every_builtin_profile() -> None:
    done = run_cli("profiles", "--json")
    assert done.returncode == 0, done.stderr
    listed = [LinkProfile.from_dict(item) for item in json.loads(done.stdout)]
    assert listed == builtin_profiles()


def test_profiles_table_shows_the_figures() -> None:
    done = run_cli("profiles")
    assert done.returncode == 0, done.stderr
    for name in builtin_names():
        assert name in done.stdout
    rows = {row["name"]: row for row in profile_rows(builtin_profiles())}
    assert rows["5g-split-ai"]["ul_rate"] == "150.564 Mbit/s" and rows["5g-embb"]["ul_delay"] == "4 ms"
    assert rows["5g-mmwave-driving"]["ul_rate"] == "trace (throughput)"
    assert rows["5g-mmwave-driving"]["trace"] == "mmwave-driving.tput"
    assert rows["cell-edge"]["ul_loss"].startswith("GE mean 0.0997")
    assert rows["lte"]["ul_jitter"] == "σ 2 ms normal"
    assert "150.564" in done.stdout
    wide = run_cli("profiles", "--wide")
    assert wide.returncode == 0 and "22.261" in wide.stdout and "mmwave-driving.tput" in wide.stdout


def test_shell_with_a_bad_profile_fails_clearly() -> None:
    done = run_cli("shell", "--profile", "no-such-profile", "--", "true")
    assert done.returncode == 2
    assert "no built-in profile named 'no-such-profile'" in done.stderr


def test_tcp_check_with_a_bad_profile_fails_clearly_before_measuring() -> None:
    done = run_cli("tcp-check", "--profile", "no-such-profile")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no built-in profile named 'no-such-profile'" in done.stderr


def test_the_tcp_table_lists_every_claim_with_its_basis() -> None:
    done = run_cli("profiles", "--tcp-markdown")
    assert done.returncode == 0, done.stderr
    for profile in builtin_profiles():
        assert profile.expected_tcp is not None and profile.expected_tcp.basis in done.stdout
    assert "| `5g-split-ai` | uplink | 150.564 Mbit/s | 144 Mbit/s |" in done.stdout
