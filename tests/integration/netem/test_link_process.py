"""The link process's life: start errors, SIGTERM, death with its parent, counters that agree with the veths.

Runs in real namespaces built by netem.topology (userspace backend): ue -- link -- edge.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from netem.errors import LinkError
from netem.link import ForwarderOptions, LinkProcess
from netem.netns import list_namespaces
from netem.profile import LinkProfile
from netem.sweep import sweep_stale
from netem.topology import Topology

pytestmark = [pytest.mark.root, pytest.mark.requires("netns", "ping"), pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[3]


def link_pid(topo: Topology) -> int:
    return int(topo.describe()["link"]["pid"])


def gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # exited, waiting to be reaped by its parent
            return True
        time.sleep(0.02)
    return False


def test_start_errors_name_the_cause_and_leave_nothing_running() -> None:
    ideal = LinkProfile.load("ideal")
    with Topology("ideal", backend="userspace") as topo:
        assert topo.ns_link is not None
        before = set(os.listdir("/proc"))
        with pytest.raises(LinkError, match="no-such-if"):
            LinkProcess.start(topo.ns_link, "no-such-if", topo.link_edge_ifname, ideal)
        with pytest.raises(LinkError, match="namespace sb0-nope does not exist"):
            LinkProcess.start("sb0-nope", "a", "b", ideal)
        with pytest.raises(LinkError, match="realtime_priority"):
            ForwarderOptions(realtime_priority=-1)
        time.sleep(0.2)
        started = {p for p in set(os.listdir("/proc")) - before if p.isdigit()}
        # only our own children: other engineers' runs start link processes at the same time
        leftovers = [p for p in started if "netem.link" in _cmdline(p) and _parent(p) == os.getpid()]
        assert leftovers == []


def _parent(pid: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.requires("realtime")
def test_link_process_describes_itself_and_runs_realtime() -> None:
    with Topology("5g-split-ai", backend="userspace") as topo:
        info = topo.describe()["link"]["process"]
        assert info["scheduling"] == "SCHED_FIFO 10"
        assert info["max_frame"] == {"ue": 1514, "edge": 1514}
        assert info["options"]["ignore_outgoing"] and info["options"]["qdisc_bypass"]
        assert os.sched_getscheduler(info["pid"]) == os.SCHED_FIFO
        assert "netem.link" in _cmdline(str(info["pid"]))


def test_sigterm_stops_the_link_cleanly() -> None:
    with Topology("ideal", backend="userspace") as topo:
        pid = link_pid(topo)
        assert topo.run("ue", ["ping", "-c", "1", "-W", "2", topo.edge_addr], timeout=10).returncode == 0
        os.kill(pid, signal.SIGTERM)
        assert gone(pid)
        process = topo._link.process  # type: ignore[union-attr]
        process._popen.wait(5)
        assert process.returncode == 0  # a clean exit, not a death by signal
        with pytest.raises(LinkError, match="exited with status 0"):
            process.stats()
        assert topo.run("ue", ["ping", "-c", "1", "-W", "1", topo.edge_addr], timeout=10).returncode != 0


def test_link_process_dies_with_its_parent() -> None:
    code = (
        "import json, time\n"
        "from netem.topology import Topology\n"
        "topo = Topology('ideal', backend='userspace').start()\n"
        "print(json.dumps({'pid': topo.describe()['link']['pid'], 'prefix': topo.prefix}), flush=True)\n"
        "time.sleep(300)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert owner.stdout is not None
        info = json.loads(owner.stdout.readline())
        assert not gone(info["pid"], timeout_s=0.2)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        assert gone(info["pid"]), "the link process outlived its parent"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        sweep_stale()
    assert not [name for name in list_namespaces() if name.startswith(info["prefix"])]


def test_counters_agree_with_the_veths_and_with_ping() -> None:
    with Topology("5g-split-ai", backend="userspace") as topo:
        done = topo.run("ue", ["ping", "-n", "-c", "20", "-i", "0.01", topo.edge_addr], timeout=30)
        assert " 0% packet loss" in done.stdout
        stats = topo.stats()
        up, down = stats["link"]["uplink"], stats["link"]["downlink"]
        veth = stats["interfaces"]
        # static neighbours and no IPv6: the only frames are the 20 echo requests and 20 replies
        assert up["rx_packets"] == up["tx_packets"] == 20 == veth["edge"]["rx_packets"]
        assert down["rx_packets"] == down["tx_packets"] == 20 == veth["ue"]["rx_packets"]
        assert up["tx_bytes"] == veth["edge"]["rx_bytes"] == 20 * (14 + 84)
        assert up["stages"] == ["rate", "delay"] and down["stages"] == ["delay"]
        assert all(count == 0 for count in up["dropped"].values())
        assert up["queued_packets"] == 0 and up["queue_delay_ms"]["count"] == 20
        assert up["sojourn_ms"]["p50"] >= 1.0  # the 1 ms delay (+ 5 us serialisation at 144 Mbit/s)


def test_interface_flap_is_reported_and_forwarding_resumes() -> None:
    with Topology("ideal", backend="userspace") as topo:
        assert topo.ns_link is not None
        with IPRoute(netns=topo.ns_link, flags=0) as ipr:
            index = ipr.link_lookup(ifname=topo.link_ue_ifname)[0]
            ipr.link("set", index=index, state="down")
            time.sleep(0.2)
            ipr.link("set", index=index, state="up")
        time.sleep(0.5)
        done = topo.run("ue", ["ping", "-n", "-c", "3", "-i", "0.1", "-W", "2", topo.edge_addr], timeout=20)
        stats = topo.stats()["link"]
    assert " 0% packet loss" in done.stdout
    assert stats["rx_errors"] >= 1
    assert any("receive error" in note for note in stats["notes"])
