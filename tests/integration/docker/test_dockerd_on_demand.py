"""The Docker engine starts on demand (splitbed.runtime.dockerd), not at set-up: started for whoever needs it,
with the same no-bridge/no-NAT flags as scripts/docker-engine.sh, said on stderr with its pid and how to stop it.
A private engine (own socket and roots) in a scratch network namespace, as test_docker_engine_script.py does:
with --bridge=none dockerd deletes a `docker0` in its namespace, which on the host is the running engine's."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import psutil
import pytest

from splitbed.runtime.dockerd import DOCKERD_FLAGS, StartedEngine
from tests.integration.docker.test_docker_engine_script import (
    SCRIPT,
    network_state,
    run_in,
    scratch_namespace,
)

__all__ = ["scratch_namespace"]  # the fixture, imported for this module's test
pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[3]


def test_set_up_starts_no_engine_and_the_script_starts_it_as_the_runtime_does() -> None:
    for script in ("scripts/setup.sh", "Makefile"):
        code = [line for line in (REPO / script).read_text().splitlines() if not line.lstrip().startswith("#")]
        assert not [line for line in code if "docker-engine" in line or "dockerd" in line], script
    command = next(line for line in SCRIPT.read_text().splitlines() if line.lstrip().startswith("nohup dockerd"))
    assert all(flag in command.split() for flag in DOCKERD_FLAGS), command


def test_an_engine_started_on_demand_says_so_and_stops(tmp_path: Path, scratch_namespace: str) -> None:
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io)")
    sock = tmp_path / "docker.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "SPLITBED_DOCKERD_LOG": str(tmp_path / "dockerd.log"),
           "SPLITBED_DOCKERD_EXTRA": f"-H unix://{sock} --data-root {tmp_path / 'data'} "
                                     f"--exec-root {tmp_path / 'exec'} --pidfile {tmp_path / 'docker.pid'}"}
    before = network_state(scratch_namespace)
    code = ("from splitbed.runtime.dockerd import ensure_engine, engine_answers\n"
            "started = ensure_engine('this test')\n"
            "print(started.pid if started else 'none', engine_answers(), ensure_engine('again'))\n")
    done = run_in(scratch_namespace, [sys.executable, "-c", code], env=env, timeout=90, cwd=REPO)
    pid_text, answers, again = (done.stdout.split() + ["", "", ""])[:3]
    pid = int(pid_text) if pid_text.isdigit() else None
    try:
        assert done.returncode == 0, done.stderr
        assert answers == "True" and again == "None"  # the second caller finds it running and starts nothing
        said = [line for line in done.stderr.splitlines() if line.startswith("splitbed: ")]
        assert said == [f"splitbed: no Docker engine answered, so this test started one: dockerd "
                        f"{' '.join(DOCKERD_FLAGS)} (pid {pid}, log {tmp_path / 'dockerd.log'}); stop it with: "
                        f"kill {pid}"], done.stderr
        assert network_state(scratch_namespace) == before
    finally:
        if pid is not None:
            StartedEngine(pid, "").stop()
    assert pid is not None and not psutil.pid_exists(pid)
