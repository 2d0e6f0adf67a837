"""Node runtimes with real namespaces, real TCP and real containers: both runtimes pass the same checks; a
container node sits in the topology's namespace only (no engine network, no route out, no capabilities), its
limits are applied and felt, and nothing it made outlives the runtime (also after the owner is SIGKILLed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
from docker_workloads import HERE, workload

from netem.netns import namespace_path
from netem.topology import Topology
from splitbed.runtime import PIPE, STDOUT, LimitError, NodeLimits, NodeStartError, make_runtime
from splitbed.runtime.container_node import DockerRuntime
from splitbed.runtime.engine import LABEL_OWNER, own_containers

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.timeout(1200)]  # the first test may build the image
RUNTIMES = ["process", "docker"]


def runtime_for(name: str, topology: Topology) -> Any:
    options = {"mounts": [HERE]} if name == "docker" else {}
    return make_runtime(name, topology, **options)


def netns_inode(name: str) -> int:
    return os.stat(namespace_path(name)).st_ino


@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_echo_over_the_emulated_link(runtime_name: str, node_image: Any, topology: Topology) -> None:
    with runtime_for(runtime_name, topology) as runtime:
        server = runtime.start_node("edge", workload("echo-server", topology.edge_addr, 5000), stdout=PIPE)
        assert server.stdout.readline() == b"ready\n", server.logs()
        client = runtime.start_node("ue", workload("echo-client", topology.edge_addr, 5000), stdin=PIPE,
                                    stdout=PIPE)
        out, _ = client.communicate(b"hello over the link\n", timeout=60)
        assert (client.returncode, out) == (0, b"HELLO OVER THE LINK\n"), client.logs()
        assert server.wait(30) == 0, server.logs()
        # Each node process lives in its side's namespace of this topology.
        for node, side in ((server, "edge"), (client, "ue")):
            assert node.runtime == runtime_name
            assert node.describe()["namespace"] == topology.namespace(side)


def test_container_node_is_in_the_topology_namespace_only(node_image: Any, topology: Topology) -> None:
    seen = {}
    for name in RUNTIMES:
        with runtime_for(name, topology) as runtime:
            node = runtime.start_node("ue", workload("sleep", 60), stdout=PIPE)
            assert node.stdout.readline() == b"sleeping\n", node.logs()
            pids = node.pids()
            assert pids, "no host pid for the node"
            for pid in pids:  # checked from the host: the kernel's view, not the node's claim
                assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns_inode(topology.ns_ue)
            node.terminate()
            node.wait(30)
            info = runtime.start_node("ue", workload("netinfo"), stdout=PIPE)
            out, _ = info.communicate(timeout=60)
            assert info.returncode == 0, info.logs()
            seen[name] = json.loads(out)
    process, container = seen["process"], seen["docker"]
    assert container["interfaces"] == process["interfaces"] == sorted(["lo", topology.ue_ifname])
    assert container["netns"] == process["netns"] == netns_inode(topology.ns_ue)
    assert all(dest != "00000000" for _, dest in container["routes"]), "a default route in the container node"
    assert container["cap_eff"] == container["cap_bnd"] == "0000000000000000"


def test_limits_are_applied_and_visible_inside(node_image: Any, topology: Topology,
                                               docker_client: Any) -> None:
    limits = NodeLimits.make(cpus=0.5, memory="256m", pids=256)
    with runtime_for("docker", topology) as runtime:
        node = runtime.start_node("ue", workload("netinfo"), stdout=PIPE, limits=limits)
        host_config = docker_client.api.inspect_container(node.container_id)["HostConfig"]
        out, _ = node.communicate(timeout=60)
        assert node.returncode == 0, node.logs()
        seen = json.loads(out)
    assert (host_config["CpuQuota"], host_config["CpuPeriod"]) == (50_000, 100_000)
    assert host_config["Memory"] == host_config["MemorySwap"] == 256 << 20
    assert host_config["PidsLimit"] == 256
    assert host_config["NetworkMode"] == "none" and not host_config.get("Privileged")
    assert seen["cpu_limit_cores"] == pytest.approx(0.5)
    assert seen["memory_limit_bytes"] == 256 << 20
    assert node.describe()["limits"]["cpus"] == 0.5


def test_limits_of_a_running_node_can_change(node_image: Any, topology: Topology) -> None:
    program = ("import sys\nfrom splitbed.host import cgroup\n"
               "for _ in sys.stdin: print(cgroup.cpu_limit_cores(), cgroup.memory_limit_bytes(), flush=True)\n")
    with runtime_for("docker", topology) as runtime:
        node = runtime.start_node("ue", [sys.executable, "-c", program], stdin=PIPE, stdout=PIPE,
                                  limits=NodeLimits.make(cpus=1.0, memory="512m"))

        def seen() -> list[str]:
            node.stdin.write(b"?\n")
            node.stdin.flush()
            return node.stdout.readline().decode().split()

        assert seen() == ["1.0", str(512 << 20)]
        node.update_limits(NodeLimits.make(cpus=0.25, memory="1g"))
        assert seen() == ["0.25", str(1 << 30)] and node.describe()["limits"]["cpus"] == 0.25
        with pytest.raises(LimitError, match="cannot be removed"):
            node.update_limits(NodeLimits.make(cpus=0.5))
        node.stdin.close()
        assert node.wait(30) == 0, node.logs()


def test_cpu_quota_throttles_a_busy_node(node_image: Any, topology: Topology) -> None:
    cpus, cpu_seconds = 0.2, 0.4
    limits = NodeLimits.make(cpus=cpus, cpu_period_us=20_000)
    with runtime_for("docker", topology) as runtime:
        node = runtime.start_node("ue", workload("burn", cpu_seconds), stdout=PIPE, limits=limits)
        out, _ = node.communicate(timeout=120)
        assert node.returncode == 0, node.logs()
    seen = json.loads(out)
    assert seen["throttling"]["nr_throttled"] > 0, seen
    # Contention can only lengthen the wall time; the quota alone forces at least cpu/cpus (less one period).
    assert seen["wall_s"] >= (seen["cpu_s"] - cpus * 0.02) / cpus * 0.9, seen


def test_memory_cap_kills_a_hog_and_says_so(node_image: Any, topology: Topology) -> None:
    with runtime_for("docker", topology) as runtime:
        node = runtime.start_node("ue", workload("hog", 400), stdout=PIPE,
                                  limits=NodeLimits.make(memory="128m"))
        out, _ = node.communicate(timeout=120)
        assert b"allocated" not in out
        assert node.returncode == 128 + signal.SIGKILL and node.oom_killed, node.logs()
        assert node.describe()["oom_killed"] is True


@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_line_by_line_dialogue_and_stderr(runtime_name: str, node_image: Any, topology: Topology) -> None:
    """The driven-mode pattern: write a line, read the answer, repeat; stderr kept apart or merged."""
    program = textwrap.dedent("""
        import sys
        print("started", file=sys.stderr, flush=True)
        for line in sys.stdin:
            print(line.strip()[::-1], flush=True)
        print("bye", file=sys.stderr, flush=True)
    """)
    with runtime_for(runtime_name, topology) as runtime:
        node = runtime.start_node("ue", [sys.executable, "-c", program], stdin=PIPE, stdout=PIPE)
        for word in ("alpha", "beta", "x" * 5000):
            node.stdin.write(word.encode() + b"\n")
            node.stdin.flush()
            assert node.stdout.readline() == word[::-1].encode() + b"\n"
        node.stdin.close()
        assert node.stdout.read() == b""
        assert node.wait(30) == 0
        assert "started" in node.logs() and "bye" in node.logs()
        merged = runtime.start_node("ue", [sys.executable, "-c", program], stdin=PIPE, stdout=PIPE,
                                    stderr=STDOUT)
        out, err = merged.communicate(b"abc\n", timeout=60)
        assert err is None and sorted(out.split()) == sorted([b"started", b"cba", b"bye"])


def test_bad_requests_get_specific_errors(node_image: Any, topology: Topology) -> None:
    with pytest.raises(LimitError, match="docker runtime"):
        make_runtime("process", topology).start_node("ue", workload("sleep", 1),
                                                     limits=NodeLimits.make(cpus=0.5))
    with runtime_for("docker", topology) as runtime:
        with pytest.raises(NodeStartError, match="side 'moon'"):
            runtime.start_node("moon", workload("sleep", 1))
        with pytest.raises(NodeStartError, match="empty command"):
            runtime.start_node("ue", [])
        with pytest.raises(NodeStartError, match="PIPE, DEVNULL or None"):
            runtime.start_node("ue", workload("sleep", 1), stdout=subprocess.STDOUT)
        assert runtime.nodes == []
    with pytest.raises(NodeStartError, match="does not exist"):
        with Topology("ideal") as gone:
            runtime = runtime_for("docker", gone)
        runtime.start_node("ue", workload("sleep", 1))


def test_close_stops_and_removes_every_container(node_image: Any, topology: Topology,
                                                 docker_client: Any) -> None:
    runtime = runtime_for("docker", topology).start()
    try:
        nodes = [runtime.start_node(side, workload("sleep", 300), stdout=PIPE) for side in ("ue", "edge")]
        for node in nodes:
            assert node.stdout.readline() == b"sleeping\n"
        ids = {node.container_id for node in nodes}
        assert ids <= {c.id for c in own_containers(docker_client)}
        nodes[0].terminate()  # docker-init forwards SIGTERM to the node
        assert nodes[0].wait(30) == 128 + signal.SIGTERM
    finally:
        runtime.close()
    assert not ids & {c.id for c in docker_client.containers.list(all=True)}


SCRIPT_KILLED_OWNER = """
import sys, time
sys.path.insert(0, {root!r})
from netem.topology import Topology
from splitbed.runtime.container_node import DockerRuntime
topo = Topology("ideal").start()
runtime = DockerRuntime(topo, image={image!r}, mounts=[{here!r}]).start()
node = runtime.start_node("edge", {argv!r}, stdout=-1)
node.stdout.readline()
print(node.name, flush=True)
time.sleep(300)
"""


def test_containers_of_a_killed_owner_are_swept(node_image: Any, docker_client: Any) -> None:
    root = str(HERE.parents[2])
    script = SCRIPT_KILLED_OWNER.format(root=root, image=node_image.tag, here=str(HERE),
                                        argv=workload("sleep", 300))
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=root)
    try:
        name = owner.stdout.readline().decode().strip()
        assert name.startswith(f"sb{owner.pid}-edge-"), name
    finally:
        owner.kill()  # SIGKILL: no cleanup of any kind runs in the owner
        owner.wait(30)
    leftover = docker_client.containers.get(name)
    assert leftover.labels[LABEL_OWNER] == str(owner.pid)
    with Topology("ideal") as topology:  # sweeps the dead owner's namespaces
        with DockerRuntime(topology) as runtime:
            assert name in runtime.swept
    assert name not in {c.name for c in docker_client.containers.list(all=True)}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(str(owner.pid) in n for n in os.listdir("/var/run/netns")):
        time.sleep(0.2)
    assert not [n for n in os.listdir("/var/run/netns") if n.startswith(f"sb{owner.pid}")]
