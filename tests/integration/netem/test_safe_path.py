"""`netem shell` started from a working directory holding marker modules (argparse.py, json.py, ... that
write a line when imported): neither the link forwarder nor the capture it starts as root, nor the user's own
`python -m` commands on both sides, may import them (issue: a harmless argparse.py was imported with uid 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.netem.test_pyexec import marker_dir

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def test_netem_shell_children_never_import_from_the_working_directory(tmp_path: Path) -> None:
    cwd, hits = marker_dir(tmp_path)
    pcap = tmp_path / "ue.pcap"
    done = subprocess.run(
        [sys.executable, "-P", "-m", "netem.cli", "shell", "--profile", "ideal", "--backend", "userspace",
         "--capture", str(pcap), "--server", f"{sys.executable} -c 'import argparse, time; time.sleep(60)'",
         "--server-wait", "1", "--", sys.executable, "-m", "json.tool", "--help"],
        cwd=cwd, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0 and "userspace backend" in done.stderr, done.stderr[-3000:]
    assert "usage" in done.stdout  # the ue command ran (json.tool's help)
    assert not hits.exists(), hits.read_text()
    assert pcap.is_file()  # the capture child ran too
