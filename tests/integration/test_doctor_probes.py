"""The doctor's probes against the real tools (ip, tc, ethtool, raw AF_PACKET sockets) in namespaces this test
makes, its cleanup (also after kill -9), and the `splitbed doctor` / `netem doctor` commands."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import netns

from netem import doctor
from splitbed import doctor as sb_doctor

pytestmark = pytest.mark.root  # needs the root_or_userns and netns probes (skip locally, fail on CI)

REPO = Path(__file__).resolve().parents[2]
_numbers = itertools.count()


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def veth_ns() -> Iterator[tuple[str, str, str]]:
    """A namespace of this test's own, with a veth pair made by the real `ip` tool (removed even on failure)."""
    pid = os.getpid()
    n = next(_numbers)
    name, a, b = f"sb{pid}dt{n}", f"sb{pid}t{n}a", f"sb{pid}t{n}b"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", a, "type", "veth", "peer", "name", b)
        for dev in (a, b):
            ip("-n", name, "link", "set", dev, "up")
        yield name, a, b
    finally:
        ip("netns", "del", name, check=False)


TC_ARGS = {"netem": ["netem", "delay", "10ms"], "tbf": ["tbf", "rate", "10mbit", "burst", "12000", "latency", "50ms"],
           "htb": ["htb", "default", "10"]}


@pytest.mark.parametrize("kind", ["netem", "tbf", "htb"])
def test_qdisc_probe_agrees_with_tc(kind: str, veth_ns: tuple[str, str, str]) -> None:
    name, a, _ = veth_ns
    by_tc = subprocess.run(["tc", "-n", name, "qdisc", "add", "dev", a, "root", "handle", "1:", *TC_ARGS[kind]],
                           capture_output=True, text=True, timeout=30)
    probe = doctor.probe_qdisc(kind)
    assert probe.ok is (by_tc.returncode == 0), (probe, by_tc.stderr)
    assert not probe.must_have
    if not probe.ok:
        assert probe.fix and probe.meaning


def test_ethtool_probe_agrees_with_the_ethtool_tool(veth_ns: tuple[str, str, str]) -> None:
    name, a, _ = veth_ns
    set_off = ip("netns", "exec", name, "ethtool", "-K", a, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
                 check=False)
    shown = ip("netns", "exec", name, "ethtool", "-k", a, check=False).stdout
    off = all(f"{feature}: off" in shown for feature in
              ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload"))
    probe = doctor.probe_ethtool_offloads()
    assert probe.ok is (set_off.returncode == 0 and off), (probe, shown)
    assert probe.must_have


RAW_SOCKET_CHECK = textwrap.dedent("""
    import socket, sys
    sender, receiver = sys.argv[1:3]
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B6))
    rx.bind((receiver, 0))
    rx.settimeout(2)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((sender, 0))
    frame = b"\\xff" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x01" + b"\\x88\\xb6" + b"raw-socket-check".ljust(46, b".")
    for _ in range(5):
        tx.send(frame)
    got = 0
    try:
        while got < 5:
            if b"raw-socket-check" in rx.recv(2048):
                got += 1
    except socket.timeout:
        pass
    print(got)
""")


def test_capture_probe_agrees_with_raw_packet_sockets(veth_ns: tuple[str, str, str]) -> None:
    """An independent referee for the scapy probe: plain AF_PACKET sockets over a veth pair."""
    name, a, b = veth_ns
    done = ip("netns", "exec", name, sys.executable, "-c", RAW_SOCKET_CHECK, a, b, check=False)
    raw_ok = done.returncode == 0 and done.stdout.strip() == "5"
    probe = doctor.probe_scapy_capture()
    assert probe.ok is raw_ok, (probe, done.stdout, done.stderr)
    if probe.ok:
        assert "captured 5" in probe.detail


def _my_scratch_objects() -> list[str]:
    prefix = f"sb{os.getpid()}d"
    names = [n for n in netns.listnetns() if n.startswith(prefix)]
    links = [line for line in ip("-o", "link").stdout.splitlines() if prefix in line]
    return names + links


def test_probes_leave_no_namespace_or_link_behind() -> None:
    probes = doctor.probe_all()
    assert [p.name for p in probes] == list(doctor.PROBES)
    netns_probe = next(p for p in probes if p.name == "netns")
    assert netns_probe.ok, netns_probe
    assert _my_scratch_objects() == []


def test_scratch_namespace_of_a_killed_run_is_swept_and_a_live_one_is_not() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom netem.doctor import scratch_netns\n"
         "held = scratch_netns()\ns = held.__enter__()\nprint(s.netns, flush=True)\ntime.sleep(120)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    name = ""
    try:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        assert name.startswith(f"sb{child.pid}dr"), name
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert name in netns.listnetns()  # kill -9: nothing could clean up
        assert name in doctor.sweep_stale_scratch()
        assert name not in netns.listnetns()
        with doctor.scratch_netns() as live:
            assert live.netns not in doctor.sweep_stale_scratch()  # owner (this process) alive: untouched
            assert live.netns in netns.listnetns()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        if name and name in netns.listnetns():
            netns.remove(name)


def test_netem_doctor_json_matches_its_exit_code() -> None:
    done = subprocess.run([sys.executable, "-m", "netem.doctor", "--json"], capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    probes = json.loads(done.stdout)
    assert [p["name"] for p in probes] == list(doctor.PROBES)
    assert all(set(p) == {"name", "ok", "must_have", "detail", "fix", "meaning"} for p in probes)
    missing = [p["name"] for p in probes if p["must_have"] and not p["ok"]]
    assert done.returncode == (1 if missing else 0), missing
    assert all(p["fix"] for p in probes if not p["ok"])


def test_splitbed_doctor_prints_one_table_with_meanings() -> None:
    done = subprocess.run([sys.executable, "-m", "splitbed.cli", "doctor"], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=dict(os.environ, COLUMNS="200"))
    assert done.returncode in (0, 1), done.stderr
    for name in sb_doctor.probe_names():
        assert name in done.stdout, name
    assert "what this means" in done.stdout
    assert ("all must-haves present" in done.stdout) is (done.returncode == 0)
    assert ("missing must-have" in done.stdout) is (done.returncode == 1)
