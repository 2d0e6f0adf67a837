"""The non-root story, for real: the doctor and the test suite run as uid 65534 (nobody, via setpriv; no user is
added to the host). Without a user namespace the must-haves are missing with the fix to apply; with one (the
doctor re-executes itself inside `unshare --user --map-root-user --net --mount`) everything works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to an unprivileged user needs root; as a "
                                "non-root user run `splitbed doctor` yourself (docs/INSTALL.md)")


def _env(home: str, **extra: str) -> dict[str, str]:
    """A clean environment for nobody: this project and its installed packages on the path, no CI unless given."""
    path = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    keep = {k: os.environ[k] for k in ("PATH", "LANG") if k in os.environ}
    return keep | {"HOME": home, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"} | extra


def as_nobody(argv: list[str], env: dict[str, str], cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@cache
def nobody_python() -> str | None:
    """An interpreter of this Python version that nobody may execute (a venv's may live under /root)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, getattr(sys, "_base_executable", ""), os.path.realpath(sys.executable),
                  shutil.which(version, path="/usr/local/bin:/usr/bin:/bin") or ""]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            # through sh: a program nobody starts must be able to start it too (the doctor re-executes itself)
            done = as_nobody(["sh", "-c", 'exec "$0" "$@"', candidate, "-c",
                              "import netem.doctor, pyroute2, rich, scapy, pytest"], _env("/tmp"), "/tmp")
        except OSError:
            continue
        if done.returncode == 0:
            return candidate
    return None


@pytest.fixture
def nobody_dir() -> Iterator[str]:
    """A working directory nobody can use (pytest's tmp_path lives under a root-only 0700 folder)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    if nobody_python() is None:
        pytest.skip(f"no {sys.version_info.major}.{sys.version_info.minor} interpreter that uid {NOBODY} can run "
                    "with this project's packages")
    folder = tempfile.mkdtemp(prefix="splitbed-nobody-")
    os.chmod(folder, 0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _doctor_json(folder: str, *args: str) -> tuple[int, dict[str, dict[str, object]]]:
    python = nobody_python()
    assert python
    done = as_nobody([python, "-m", "netem.doctor", "--json", *args], _env(folder), folder)
    assert done.stdout.strip(), done.stderr
    return done.returncode, {p["name"]: p for p in json.loads(done.stdout)}


def test_without_user_namespace_the_must_haves_are_missing_with_the_fix(nobody_dir: str) -> None:
    code, probes = _doctor_json(nobody_dir, "--no-userns")
    assert code == 1
    assert "not root" in str(probes["root_or_userns"]["detail"])
    assert probes["netns"]["ok"] is False and probes["netns"]["must_have"] is True
    assert "unshare --user --map-root-user --net --mount" in str(probes["netns"]["fix"])
    assert probes["scapy_capture"]["ok"] is False


def test_doctor_reexecutes_inside_a_user_namespace(nobody_dir: str) -> None:
    _, plain = _doctor_json(nobody_dir, "--no-userns")
    if not plain["root_or_userns"]["ok"]:
        pytest.skip(f"unprivileged user namespaces unavailable here: {plain['root_or_userns']['detail']}")
    code, probes = _doctor_json(nobody_dir)
    assert "inside a user namespace" in str(probes["root_or_userns"]["detail"])
    for name in ("netns", "ethtool_offloads", "scapy_capture"):
        assert probes[name]["ok"] is True, probes[name]
    assert code == (1 if any(p["must_have"] and not p["ok"] for p in probes.values()) else 0)


def test_suite_as_nobody_skips_locally_and_fails_on_ci(nobody_dir: str) -> None:
    Path(nobody_dir, "test_needs_netns.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.root
        def test_needs_a_namespace():
            pass
    """))
    python = nobody_python()
    assert python
    argv = [python, "-m", "pytest", "-p", "no:cacheprovider", "-rsE", "test_needs_netns.py"]
    local = as_nobody(argv, _env(nobody_dir), nobody_dir)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 skipped" in local.stdout
    assert "must-have 'netns' missing" in local.stdout and "unshare --user" in local.stdout
    on_ci = as_nobody(argv, _env(nobody_dir, CI="true"), nobody_dir)
    assert on_ci.returncode == 1, on_ci.stdout
    assert "must-have 'netns' missing on CI" in on_ci.stdout
