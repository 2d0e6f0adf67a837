"""`netem shell` with real commands: ping and iperf3 through the link, exit status, environment, teardown."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netem.netns import list_namespaces

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[3]


def netem(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netem.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def leftover(stderr: str) -> list[str]:
    """Namespaces of the shell run named in its banner that still exist."""
    names = re.findall(r"\((sb\d+-[0-9a-z]+(?:ue|ed))\)", stderr)
    assert names, stderr
    return [n for n in names if n in list_namespaces()]


def test_shell_returns_the_command_status_and_exports_the_remote() -> None:
    done = netem("shell", "--profile", "ideal", "--", "sh", "-c",
                 'echo "remote=$NETEM_REMOTE local=$NETEM_LOCAL"; ping -c 1 -W 2 "$NETEM_REMOTE" >/dev/null; exit 7')
    assert done.returncode == 7, done.stderr
    assert re.search(r"remote=198\.18\.\d+\.2 local=198\.18\.\d+\.1", done.stdout)
    assert leftover(done.stderr) == []


def test_shell_ping_rtt_through_a_delayed_link(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = netem("shell", "--profile", "5g-split-ai", "--report", str(report), "--",
                 "ping", "-c", "5", "-i", "0.1", "-n", "$NETEM_REMOTE")
    # The command gets no shell: `$NETEM_REMOTE` stays literal, ping fails -> its status (2) comes back.
    assert done.returncode == 2
    done = netem("shell", "--profile", "5g-split-ai", "--report", str(report), "--",
                 "sh", "-c", 'ping -c 5 -i 0.1 -n "$NETEM_REMOTE"')
    assert done.returncode == 0, done.stderr
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", done.stdout)]
    assert len(rtts) == 5 and min(rtts) >= 2.0  # 2 x 1 ms one-way delay at least
    document = json.loads(report.read_text())
    assert document["exit_status"] == 0 and document["topology"]["profile"]["name"] == "5g-split-ai"
    assert document["stats"]["backend"] == document["topology"]["backend"]
    assert leftover(done.stderr) == []


def test_shell_with_iperf3_server_and_capture(tmp_path: Path) -> None:
    pcap, report = tmp_path / "ue.pcap", tmp_path / "report.json"
    # (-t, not -n: with -n iperf3 ends the test once the bytes are queued, and unsent ones are discarded.
    # -b 100M: 5G rates; an unthrottled ~1 Gbit/s flow outruns the Python capture, which then reports drops.)
    done = netem("shell", "--profile", "ideal", "--server", "iperf3 -s -1", "--capture", str(pcap),
                 "--report", str(report), "--", "sh", "-c", 'iperf3 -c "$NETEM_REMOTE" -t 1 -b 100M -J')
    assert done.returncode == 0, done.stderr
    received = json.loads(done.stdout)["end"]["sum_received"]["bytes"]
    assert received > 1 << 20
    document = json.loads(report.read_text())
    assert document["capture"]["summary"]["kernel_drops"] == 0
    data = max((f for f in document["capture"]["flows"] if f["dport"] == 5201), key=lambda f: f["payload_bytes"])
    # The ue-side capture saw every byte the server counted (plus any the test end cut off in flight).
    assert data["payload_bytes"] - data["retransmitted_bytes"] >= received
    assert leftover(done.stderr) == []


def test_doctor_is_reachable_through_netem() -> None:
    done = netem("doctor", "--json", timeout=180)
    probes = {p["name"]: p for p in json.loads(done.stdout)}
    assert {"netns", "sch_netem", "tbf"} <= set(probes)
    assert done.returncode in (0, 1)
    assert (done.returncode == 1) == any(p["must_have"] and not p["ok"] for p in probes.values())


def test_quick_link_without_a_profile_file_delays_and_shapes(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = netem("shell", "--rate", "20", "--delay", "10", "--loss", "0%", "--report", str(report), "--",
                 "sh", "-c", 'ping -c 4 -i 0.1 -n "$NETEM_REMOTE"')
    assert done.returncode == 0, done.stderr
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", done.stdout)]
    assert len(rtts) == 4 and min(rtts) >= 20.0  # 10 ms each way
    profile = json.loads(report.read_text())["topology"]["profile"]
    assert profile["uplink"]["rate_mbit"] == profile["downlink"]["rate_mbit"] == 20.0
    assert profile["name"] == "quick-r20-d10-l0pct"
    assert leftover(done.stderr) == []


def test_quick_options_override_one_field_of_a_profile_on_the_uplink_only(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = netem("shell", "-p", "5g-split-ai", "--delay", "15", "--uplink-only", "--report", str(report), "--",
                 "sh", "-c", 'ping -c 4 -i 0.1 -n "$NETEM_REMOTE"')
    assert done.returncode == 0, done.stderr
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", done.stdout)]
    assert len(rtts) == 4 and min(rtts) >= 16.0  # 15 ms up + the profile's 1 ms down
    profile = json.loads(report.read_text())["topology"]["profile"]
    assert profile["uplink"]["delay_ms"] == 15.0 and profile["downlink"]["delay_ms"] == 1.0
    from netem.profile import LinkProfile

    assert profile["uplink"]["rate_mbit"] == LinkProfile.load("5g-split-ai").uplink.rate_mbit  # the others stay


def test_a_shell_inside_a_shell_is_refused_with_how_to_compose() -> None:
    inner = f"{sys.executable} -m netem.cli shell --rate 10 -- true"
    done = netem("shell", "-p", "ideal", "--", "sh", "-c", inner + '; echo "inner=$?"')
    assert done.returncode == 0, done.stderr
    assert "inner=2" in done.stdout
    refusal = [line for line in done.stderr.splitlines() if "already inside a netem shell" in line]
    assert len(refusal) == 1 and "fix: compose in one shell instead" in refusal[0]
    assert leftover(done.stderr) == []


def test_bad_input_builds_nothing() -> None:
    for argv in (["shell", "-p", "lte", "--rate", "10", "--bogus", "--", "true"],
                 ["shell", "-p", "ideal", "--", "nosuchcommand"],
                 ["shell", "-p", "lte", "--capture", "/missing/dir/x.pcap", "--", "true"]):
        done = netem(*argv)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "; fix: " in lines[0], done.stderr
        assert "netem: " not in done.stderr  # the banner: no link was built


def test_per_packet_log_and_its_graph(tmp_path: Path) -> None:
    from netem.linkgraph import read_log, throughput_mbit

    log, png = tmp_path / "link.log", tmp_path / "link.png"
    done = netem("shell", "--rate", "20", "--delay", "10", "--log", str(log), "--server", "iperf3 -s -1", "--",
                 "sh", "-c", 'iperf3 -c "$NETEM_REMOTE" -t 2 -J')
    assert done.returncode == 0, done.stderr
    received = json.loads(done.stdout)["end"]["sum_received"]["bytes"]
    data = read_log(log)
    up = data.uplink
    assert data.profiles[0][1]["name"] == "quick-r20-d10"
    assert len(up.departures_ms) <= len(up.arrivals_ms) and len(up.departures_ms) > 1000
    assert min(up.delays_ms) >= 10.0  # every packet waited at least the one-way delay
    # the frames the link delivered carry at least what the server counted (plus headers)
    assert sum(up.departure_bytes) >= received
    # delivered throughput never beats the link rate (one 100 ms window may hold a frame more: 5 % slack)
    busiest = max(throughput_mbit(up.departures_ms, up.departure_bytes, 100.0, data.end_ms))
    assert 15.0 <= busiest <= 20.0 * 1.05
    drawn = netem("graph", str(log), "-o", str(png))
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    refused = netem("shell", "--rate", "20", "--backend", "kernel", "--log", str(log), "--", "true")
    assert refused.returncode == 2 and "--log needs the userspace link" in refused.stderr


def test_the_installed_tcpdump_reads_the_capture(tmp_path: Path) -> None:
    """scripts/setup.sh installs tcpdump, which users reach for to read the pcaps."""
    pcap = tmp_path / "ue.pcap"
    done = netem("shell", "-p", "ideal", "--capture", str(pcap), "--", "sh", "-c",
                 'ping -c 3 -i 0.05 -n "$NETEM_REMOTE" >/dev/null')
    assert done.returncode == 0, done.stderr
    read = subprocess.run(["tcpdump", "-nr", str(pcap), "icmp"], capture_output=True, text=True, timeout=30)
    assert read.returncode == 0, read.stderr
    assert len([line for line in read.stdout.splitlines() if "ICMP echo request" in line]) == 3
