"""scripts/docker-engine.sh starts an engine that leaves networking alone: a private dockerd (own socket, data
and exec roots) has no bridge network, writes no iptables rule and does not touch net.ipv4.ip_forward;
`--check` reports a missing engine with exit status 1.

The private engine runs in a scratch network namespace: with --bridge=none, dockerd deletes any interface named
`docker0` in its namespace at start, which on the host would be the running engine's bridge. The host's own
engine links are checked unchanged too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from netem.naming import new_prefix, object_name
from netem.netns import create_namespace, kill_namespace_processes, namespace_path, remove_namespace

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.timeout(120)]
SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "docker-engine.sh"


def run_in(namespace: str | None, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run argv in a namespace's network only (nsenter keeps the host's /sys and cgroups, which dockerd needs)."""
    prefix = ["nsenter", f"--net={namespace_path(namespace)}", "--"] if namespace else []
    return subprocess.run(prefix + argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


def network_state(namespace: str | None) -> dict[str, object]:
    state: dict[str, object] = {
        "ip_forward": run_in(namespace, ["cat", "/proc/sys/net/ipv4/ip_forward"], check=True).stdout.strip()}
    links = run_in(namespace, ["ip", "-o", "link", "show"], check=True).stdout
    names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
    state["links"] = names if namespace else [n for n in names if n.startswith(("docker", "br-"))]
    if shutil.which("iptables"):
        for table in ("nat", "filter"):
            state[table] = run_in(namespace, ["iptables", "-t", table, "-S"], check=True).stdout
    return state


@pytest.fixture
def scratch_namespace() -> Iterator[str]:
    prefix, _ = new_prefix()
    name = object_name(prefix, "dk")  # sb<pid>-...: swept by netem if this run dies
    create_namespace(name)
    try:
        yield name
    finally:
        kill_namespace_processes(name, grace_s=5)
        remove_namespace(name)


def test_check_reports_a_missing_engine(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/nobody.sock"}
    done = subprocess.run(["bash", str(SCRIPT), "--check"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "no engine answers" in done.stderr


def test_started_engine_has_no_bridge_nat_or_forwarding(tmp_path: Path, scratch_namespace: str) -> None:
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io)")
    sock, pidfile = tmp_path / "docker.sock", tmp_path / "docker.pid"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "SPLITBED_DOCKERD_LOG": str(tmp_path / "dockerd.log"),
           "SPLITBED_DOCKERD_EXTRA": f"-H unix://{sock} --data-root {tmp_path / 'data'} "
                                     f"--exec-root {tmp_path / 'exec'} --pidfile {pidfile}"}
    host_before, before = network_state(None), network_state(scratch_namespace)
    started = run_in(scratch_namespace, ["bash", str(SCRIPT)], env=env, timeout=90)
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "starting dockerd --bridge=none --iptables=false --ip-forward=false" in started.stdout
        networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], env=env,
                                  capture_output=True, text=True, check=True, timeout=30).stdout.split()
        assert "bridge" not in networks and "none" in networks
        assert network_state(scratch_namespace) == before
        assert network_state(None) == host_before
        again = run_in(scratch_namespace, ["bash", str(SCRIPT)], env=env, timeout=30)
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
