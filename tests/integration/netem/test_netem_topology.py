"""Topology: real namespaces and veths, real ping, cleanup on exit/exception/SIGTERM/SIGKILL, no route out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from netem.errors import TopologyError
from netem.netns import list_namespaces, namespace_pids
from netem.profile import DirectionProfile, LinkProfile
from netem.topology import Topology

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[3]


def mine(prefix: str) -> list[str]:
    return [name for name in list_namespaces() if name.startswith(prefix)]


def test_ideal_kernel_topology_connects_and_leaves_nothing() -> None:
    with Topology("ideal") as topo:
        assert topo.backend == "kernel" and topo.ns_link is None
        assert sorted(mine(topo.prefix)) == sorted([topo.ns_ue, topo.ns_edge])
        result = topo.run("ue", ["ping", "-c", "2", "-i", "0.2", "-W", "2", topo.edge_addr], timeout=15)
        assert result.returncode == 0, result.stderr
        assert "2 received" in result.stdout
        # The edge side answers from its own address, in its own namespace.
        addrs = topo.run("edge", ["ip", "-o", "-4", "addr", "show"], timeout=10).stdout
        assert f"inet {topo.edge_addr}/24" in addrs and topo.ue_addr not in addrs
        prefix = topo.prefix
    assert mine(prefix) == []


def test_no_route_out_and_no_ipv6_chatter() -> None:
    with Topology("ideal") as topo:
        for side in ("ue", "edge"):
            routes = topo.run(side, ["ip", "-4", "route", "show"], timeout=10).stdout
            assert "default" not in routes, routes
            outside = topo.run(side, ["ip", "route", "get", "8.8.8.8"], timeout=10)
            assert outside.returncode != 0 and "unreachable" in outside.stderr.lower()
            v6 = topo.run(side, ["ip", "-6", "addr", "show", "scope", "link"], timeout=10).stdout
            assert "fe80" not in v6
        neighbours = topo.run("ue", ["ip", "neigh", "show"], timeout=10).stdout
        assert topo.edge_addr in neighbours and "PERMANENT" in neighbours


def test_describe_is_json_and_records_offloads_off() -> None:
    with Topology("ideal") as topo:
        described = json.loads(json.dumps(topo.describe()))
        assert described["backend"] == "kernel" and described["profile"]["name"] == "ideal"
        for ifname in (topo.ue_ifname, topo.edge_ifname):
            features = described["offloads"][ifname]["features"]
            assert features and not any(features.values()), features
        # Cross-check with the real ethtool tool.
        shown = topo.run("ue", ["ethtool", "-k", topo.ue_ifname], timeout=10).stdout
        for line in ("tcp-segmentation-offload: off", "generic-segmentation-offload: off",
                     "generic-receive-offload: off"):
            assert line in shown


def test_exception_inside_removes_everything() -> None:
    prefix = ""
    with pytest.raises(RuntimeError, match="boom"):
        with Topology("ideal") as topo:
            prefix = topo.prefix
            topo.popen("edge", ["sleep", "60"])
            raise RuntimeError("boom")
    assert prefix and mine(prefix) == []


def test_processes_are_stopped_at_close_and_run_in_their_namespace() -> None:
    with Topology("ideal") as topo:
        sleeper = topo.popen("ue", ["sleep", "60"])
        assert sleeper.pid in namespace_pids(topo.ns_ue)
        assert sleeper.pid not in namespace_pids(topo.ns_edge)
    assert sleeper.poll() is not None


def test_use_outside_the_context_is_refused() -> None:
    topo = Topology("ideal")
    with pytest.raises(TopologyError, match="not running"):
        topo.popen("ue", ["true"])
    with topo:
        pass
    with pytest.raises(TopologyError, match="not running"):
        topo.stats()
    with pytest.raises(TopologyError, match="already started"):
        topo.start()


def _spawn_owner(extra: str = "") -> tuple[subprocess.Popen[str], dict[str, str]]:
    code = (
        "import json, subprocess, sys, time\n"
        "from netem.topology import Topology\n"
        "topo = Topology('ideal').start()\n"
        "sleeper = topo.popen('edge', ['sleep', '300'], die_with_parent=False)\n"
        f"{extra}"
        "print(json.dumps({'prefix': topo.prefix, 'ue': topo.ns_ue, 'edge': topo.ns_edge, "
        "'sleeper': str(sleeper.pid)}), flush=True)\n"
        "time.sleep(300)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, "the owner process died before building its topology"
    return child, json.loads(line)


def test_kill_9_leftovers_are_swept_by_the_next_start() -> None:
    child, info = _spawn_owner()
    try:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert sorted(mine(info["prefix"])) == sorted([info["ue"], info["edge"]])  # nothing could clean up
        assert Path(f"/proc/{info['sleeper']}").exists()  # its server outlived it, inside the dead namespace
        with Topology("ideal") as topo:
            assert info["ue"] in topo.swept and info["edge"] in topo.swept
            assert topo.ns_ue in list_namespaces()  # the live one was not touched
        assert mine(info["prefix"]) == []
        deadline = time.monotonic() + 5
        while Path(f"/proc/{info['sleeper']}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{info['sleeper']}").exists()
    finally:
        if child.poll() is None:
            child.kill()
        for name in mine(info["prefix"]):  # only if the assertion above failed
            subprocess.run(["ip", "netns", "delete", name], check=False)


def test_kill_9_node_logs_are_swept_by_the_next_start() -> None:
    """A node's log (a temporary file the runtime deletes when the node is released) outlives a SIGKILL of its
    owner; the next start removes it, and never a live owner's."""
    extra = ("from splitbed.runtime.process_node import ProcessRuntime\n"
             "runtime = ProcessRuntime(topo)\nnode = runtime.start_node('ue', ['sleep', '300'])\n")
    child, info = _spawn_owner(extra)
    live = Path(tempfile.gettempdir()) / f"sb{os.getpid()}-ue-livelog.log"
    live.write_text("mine")
    try:
        logs = list(Path(tempfile.gettempdir()).glob(f"sb{child.pid}-ue-*.log"))
        assert len(logs) == 1
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert logs[0].exists()  # nothing could clean up
        with Topology("ideal") as topo:
            assert str(logs[0]) in topo.swept
        assert not logs[0].exists() and live.exists()
    finally:
        live.unlink(missing_ok=True)
        if child.poll() is None:
            child.kill()
        for name in mine(info["prefix"]):
            subprocess.run(["ip", "netns", "delete", name], check=False)


def test_live_owner_is_never_swept() -> None:
    child, info = _spawn_owner()
    try:
        with Topology("ideal") as topo:
            assert info["ue"] not in topo.swept
        assert sorted(mine(info["prefix"])) == sorted([info["ue"], info["edge"]])
    finally:
        child.terminate()
        child.wait(30)
    assert mine(info["prefix"]) == []  # SIGTERM cleaned up


def test_sigterm_cleans_up_and_exits_with_sigterm_status() -> None:
    child, info = _spawn_owner()
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == -signal.SIGTERM
    assert mine(info["prefix"]) == []
    assert not Path(f"/proc/{info['sleeper']}").exists() or _is_zombie(int(info["sleeper"]))


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_nsexec_runs_a_program_in_the_namespace_and_returns_its_status() -> None:
    with Topology("ideal") as topo:
        shown = subprocess.run([sys.executable, "-m", "netem.nsexec", topo.ns_ue, "--", "ip", "-o", "-4", "addr"],
                               capture_output=True, text=True, timeout=30, cwd=REPO)
        assert shown.returncode == 0 and topo.ue_addr in shown.stdout
        failed = subprocess.run([sys.executable, "-m", "netem.nsexec", topo.ns_ue, "--", "sh", "-c", "exit 7"],
                                timeout=30, cwd=REPO)
        assert failed.returncode == 7
    missing = subprocess.run([sys.executable, "-m", "netem.nsexec", "sb1-nonexistent", "--", "true"],
                             capture_output=True, text=True, timeout=30, cwd=REPO)
    assert missing.returncode == 125 and "does not exist" in missing.stderr


def test_two_topologies_at_once_are_independent() -> None:
    with Topology("ideal") as first, Topology("ideal") as second:
        assert first.ns_ue != second.ns_ue and first.ue_addr != second.ue_addr
        assert first.run("ue", ["ping", "-c", "1", "-W", "2", first.edge_addr], timeout=10).returncode == 0
        # The other topology's address is unreachable: separate namespaces, no route between them.
        assert first.run("ue", ["ping", "-c", "1", "-W", "1", second.edge_addr], timeout=10).returncode != 0


def test_rate_only_profile_uses_tbf_on_the_kernel_backend() -> None:
    profile = LinkProfile.load("ideal").replace(name="rate-only", uplink=DirectionProfile(rate_mbit=20.0))
    with Topology(profile, backend="kernel") as topo:
        qdiscs = topo.run("ue", ["tc", "qdisc", "show", "dev", topo.ue_ifname], timeout=10).stdout
        assert "tbf" in qdiscs and "rate 20Mbit" in qdiscs and "pfifo" in qdiscs and "limit 1000p" in qdiscs
        assert "tbf" not in topo.run("edge", ["tc", "qdisc", "show", "dev", topo.edge_ifname], timeout=10).stdout
        link = topo.describe()["link"]["uplink"]["qdiscs"]
        assert [q["kind"] for q in link] == ["tbf", "pfifo"]
        topo.update(profile.replace(uplink=DirectionProfile(rate_mbit=5.0, queue_packets=50)))
        qdiscs = topo.run("ue", ["tc", "qdisc", "show", "dev", topo.ue_ifname], timeout=10).stdout
        assert "rate 5Mbit" in qdiscs and "limit 50p" in qdiscs
        assert topo.stats()["link"]["uplink"]["qdiscs"][0]["kind"] == "tbf"


def test_parent_pid_in_every_name() -> None:
    with Topology("ideal") as topo:
        for name in (topo.ns_ue, topo.ns_edge, topo.ue_ifname, topo.edge_ifname):
            assert name.startswith(f"sb{os.getpid()}-") and len(name) <= 15


def _median_rtt(topo: Topology, count: int = 10) -> float:
    import re
    import statistics

    out = topo.run("ue", ["ping", "-n", "-c", str(count), "-i", "0.02", topo.edge_addr], timeout=30).stdout
    return statistics.median(float(x) for x in re.findall(r"time=([\d.]+) ms", out))


def test_userspace_topology_bridges_through_the_link_namespace() -> None:
    delayed = LinkProfile.load("ideal").replace(
        name="d5", uplink=DirectionProfile(delay_ms=5.0), downlink=DirectionProfile(delay_ms=5.0))
    with Topology(delayed, backend="userspace") as topo:
        assert topo.ns_link is not None and topo.sides == ("ue", "edge", "link")
        assert sorted(mine(topo.prefix)) == sorted([topo.ns_ue, topo.ns_edge, topo.ns_link])
        # The middle namespace is pure L2: no IPv4 address, so its kernel never answers or routes anything.
        assert "inet " not in topo.run("link", ["ip", "-o", "-4", "addr", "show", "scope", "global"], timeout=10).stdout
        described = json.loads(json.dumps(topo.describe()))
        assert set(described["offloads"]) == {topo.ue_ifname, topo.edge_ifname, topo.link_ue_ifname,
                                              topo.link_edge_ifname}
        assert all(not any(o["features"].values()) for o in described["offloads"].values())
        assert 10.0 <= _median_rtt(topo) <= 11.0
        # Live change, no teardown: the link process keeps running, the delay changes.
        pid = described["link"]["pid"]
        topo.update(delayed.replace(uplink=DirectionProfile(delay_ms=20.0), downlink=DirectionProfile(delay_ms=20.0)))
        assert 40.0 <= _median_rtt(topo) <= 41.0
        assert topo.describe()["link"]["pid"] == pid and topo.profile.uplink.delay_ms == 20.0
        stats = topo.stats()
        assert stats["backend"] == "userspace"
        assert stats["link"]["uplink"]["tx_packets"] >= 20 and stats["link"]["downlink"]["tx_packets"] >= 20
        assert stats["interfaces"]["ue"]["tx_packets"] >= 20
        link_pid = pid
    assert not Path(f"/proc/{link_pid}").exists() or _is_zombie(link_pid)


def test_kernel_topology_refuses_a_live_change_it_cannot_do() -> None:
    from netem.errors import UnsupportedProfileError

    with Topology("ideal", backend="kernel") as topo:
        with pytest.raises(UnsupportedProfileError, match="kernel backend"):
            topo.update("5g-mmwave-driving")
        assert topo.profile.name == "ideal"


def test_backend_resolution_follows_the_probed_kernel() -> None:
    from netem.backend import resolve_backend
    from netem.capabilities import kernel_has
    from netem.errors import BackendUnavailableError, UnsupportedProfileError

    embb = LinkProfile.load("5g-embb")
    assert resolve_backend(LinkProfile.load("ideal"), "auto") == "kernel"
    assert resolve_backend(LinkProfile.load("5g-mmwave-driving"), "auto") == "userspace"  # traces: userspace only
    assert resolve_backend(embb, "userspace") == "userspace"
    with pytest.raises(UnsupportedProfileError, match="trace"):
        resolve_backend(LinkProfile.load("5g-mmwave-driving"), "kernel")
    if kernel_has("netem"):
        assert resolve_backend(embb, "auto") == "kernel"
    else:
        assert resolve_backend(embb, "auto") == "userspace"
        with pytest.raises(BackendUnavailableError, match="no sch_netem"):
            resolve_backend(embb, "kernel")
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend(embb, "fpga")
