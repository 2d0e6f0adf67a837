"""scripts/docker-engine.sh starts an engine that leaves the host's networking alone: a private dockerd (own
socket, data and exec roots, beside the real engine) has no bridge network, writes no iptables rule and does
not touch net.ipv4.ip_forward; `--check` reports a missing engine with exit status 1."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.timeout(120)]
SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "docker-engine.sh"


def host_network_state() -> dict[str, object]:
    state: dict[str, object] = {"ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()}
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    state["engine_links"] = sorted(line.split(":")[1].strip() for line in links.splitlines()
                                   if line.split(":")[1].strip().startswith(("docker", "br-")))
    if shutil.which("iptables"):
        for table in ("nat", "filter"):
            state[table] = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True,
                                          check=True).stdout
    return state


def test_check_reports_a_missing_engine(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/nobody.sock"}
    done = subprocess.run(["bash", str(SCRIPT), "--check"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "no engine answers" in done.stderr


def test_started_engine_has_no_bridge_nat_or_forwarding(tmp_path: Path) -> None:
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io)")
    sock, pidfile = tmp_path / "docker.sock", tmp_path / "docker.pid"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "SPLITBED_DOCKERD_LOG": str(tmp_path / "dockerd.log"),
           "SPLITBED_DOCKERD_EXTRA": f"-H unix://{sock} --data-root {tmp_path / 'data'} "
                                     f"--exec-root {tmp_path / 'exec'} --pidfile {pidfile}"}
    before = host_network_state()
    started = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=90)
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "starting dockerd --bridge=none --iptables=false --ip-forward=false" in started.stdout
        networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], env=env,
                                  capture_output=True, text=True, check=True, timeout=30).stdout.split()
        assert "bridge" not in networks and "none" in networks
        assert host_network_state() == before
        again = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 0 and "already running" in again.stdout  # idempotent
    finally:
        if pid is not None and psutil.pid_exists(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while psutil.pid_exists(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)
    assert pid is not None and not psutil.pid_exists(pid)
