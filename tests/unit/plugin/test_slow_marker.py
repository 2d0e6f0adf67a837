"""The plugin skips tests marked `slow` unless --full, and only those: a test whose id merely contains the
word "slow" (e.g. a parametrised case whose id is "slow") must still run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TEST_FILE = '''
import pytest

@pytest.mark.parametrize("link", ["slow", "fast"])
def test_by_id(link):
    pass

@pytest.mark.slow
def test_marked():
    pass
'''


def _run(tmp_path: Path, *args: str) -> str:
    (tmp_path / "test_inner.py").write_text(TEST_FILE)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(tmp_path / "test_inner.py"), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return proc.stdout


def test_only_marked_tests_are_skipped_as_slow(tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert "3 passed" not in out
    assert "2 passed, 1 skipped" in out, out
    assert "slow: run with --full" in out


def test_full_runs_marked_tests(tmp_path: Path) -> None:
    out = _run(tmp_path, "--full")
    assert "3 passed" in out, out
