"""Child Pythons never import from the working directory: a directory holding marker modules named like the
standard and third-party modules the children import (each writes a line to a file when imported) must leave
that file empty after starting them. The control case (plain `python -m`) shows the markers do fire."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netem.pyexec import python_module, safe_env

MARKED = ("argparse", "json", "typer", "struct")


def marker_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A working directory full of marker modules, and the file they write to when imported."""
    cwd, hits = tmp_path / "cwd", tmp_path / "hits.log"
    cwd.mkdir()
    for name in MARKED:
        (cwd / f"{name}.py").write_text(
            "import os, sys\n"
            f"with open({str(hits)!r}, 'a') as out:\n"
            f"    out.write(f'{name} imported by pid {{os.getpid()}}: {{sys.argv!r}}\\n')\n")
    return cwd, hits


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=120)


def test_plain_dash_m_imports_the_marker(tmp_path: Path) -> None:
    cwd, hits = marker_dir(tmp_path)
    _run([sys.executable, "-m", "netem.link", "--help"], cwd)
    assert "imported by pid" in hits.read_text()


@pytest.mark.parametrize("module", ["netem.link", "netem.capture", "netem.doctor", "splitbed.nodes.remote",
                                    "splitbed.nodes.local"])
def test_python_module_never_imports_from_the_working_directory(tmp_path: Path, module: str) -> None:
    cwd, hits = marker_dir(tmp_path)
    argv = python_module(module, "--help")
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert not hits.exists(), hits.read_text()
    assert done.returncode == 0 and "usage" in (done.stdout + done.stderr).lower(), done.stderr[-2000:]


def test_safe_env_protects_a_users_own_python(tmp_path: Path) -> None:
    cwd, hits = marker_dir(tmp_path)
    _run([sys.executable, "-m", "json.tool", "--help"], cwd, env=safe_env())
    _run([sys.executable, "-c", "import argparse"], cwd, env=safe_env())
    assert not hits.exists(), hits.read_text()
