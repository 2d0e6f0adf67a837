"""A cell of several UEs behind one userspace link: the shared uplink is split by the scheduler, not by luck.

Two UEs each push one iperf3 TCP flow to the edge through a 20 Mbit/s cell under round robin. Goodput per UE is
read at the edge from each connection's `bytes_received` (ss -ti) at two common moments while both are
backlogged, so both UEs are measured over the same window. The issue's bar: each UE gets half the cell's rate
within 10 %. A killed owner leaves nothing a next start does not sweep (slow: N = 16).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import pytest

from netem.cell import CellTopology
from netem.errors import UnsupportedProfileError
from netem.link.fidelity import tcp_goodput_ceiling
from netem.netns import list_namespaces
from netem.profile import DirectionProfile, LinkProfile

pytestmark = [pytest.mark.root, pytest.mark.requires("netns", "iperf3"), pytest.mark.timeout(180)]

CELL_MBIT = 20.0


def cell_profile() -> LinkProfile:
    return LinkProfile("cell-test", "two UEs share a 20 Mbit/s uplink", "tests/integration/netem/test_cell.py",
                       DirectionProfile(rate_mbit=CELL_MBIT, delay_ms=2.0, queue_bytes=150_000),
                       DirectionProfile(delay_ms=2.0))


def received_by_peer(cell: CellTopology) -> dict[str, int]:
    """bytes_received of every established TCP connection in the edge namespace, by peer address."""
    out = cell.run("edge", ["ss", "-tinH", "state", "established"], timeout=10).stdout
    totals: dict[str, int] = {}
    peer = None
    for line in out.splitlines():
        addresses = re.findall(r"(\d+\.\d+\.\d+\.\d+)\]?:\d+", line)  # iperf3 listens on v6: [::ffff:a.b.c.d]
        if len(addresses) >= 2:
            peer = addresses[1]
        match = re.search(r"bytes_received:(\d+)", line)
        if match and peer is not None:
            totals[peer] = totals.get(peer, 0) + int(match.group(1))
    return totals


@pytest.mark.parametrize("scheduler", ["rr", pytest.param("pf", marks=pytest.mark.slow)])
def test_two_backlogged_ues_get_half_the_cell_each(scheduler: str) -> None:
    """Round robin by construction; proportional fair with one channel for all UEs reaches the same shares."""
    with CellTopology(cell_profile(), ues=2, scheduler=scheduler) as cell:
        servers = [cell.popen("edge", ["iperf3", "-s", "-1", "-p", str(5301 + i)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for i in range(2)]
        time.sleep(0.5)
        clients = [cell.popen(f"ue{i}", ["timeout", "30", "iperf3", "-c", cell.edge_addr, "-p", str(5301 + i),
                                         "-t", "9", "-l", "64K"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
        time.sleep(3.0)  # both past slow start and backlogged
        t0, first = time.monotonic(), received_by_peer(cell)
        time.sleep(4.0)
        t1, last = time.monotonic(), received_by_peer(cell)
        scheduled = cell.ue_stats()
        for process in clients:  # the window is measured: the rest of the -t 9 run (its margin) is not needed
            process.terminate()
        for process in clients + servers:
            process.wait(timeout=30)
    rates = {addr: (last[addr] - first.get(addr, 0)) * 8 / 1e6 / (t1 - t0) for addr in cell.ue_addrs}
    half = tcp_goodput_ceiling(CELL_MBIT) / 2
    print(f"per-UE goodput (Mbit/s): {rates}; half the cell's TCP payload ceiling: {half:.2f}; bytes received "
          f"at the window's ends: {first} {last}")
    for addr, rate in rates.items():
        assert abs(rate - half) <= 0.10 * half, (f"UE {addr}: {rate:.2f} Mbit/s of goodput, half the cell is "
                                                 f"{half:.2f}; all: {rates}")
    assert set(scheduled) >= set(cell.ue_addrs)  # the scheduler saw both UEs backlogged


def test_the_kernel_backend_says_a_cell_is_userspace_only() -> None:
    with pytest.raises(UnsupportedProfileError, match="userspace only"):
        CellTopology(cell_profile(), ues=2, backend="kernel")


@pytest.mark.slow
def test_a_killed_run_of_16_ues_leaves_nothing_after_the_next_start() -> None:
    script = textwrap.dedent("""
        import os, signal, sys
        from netem.cell import CellTopology
        cell = CellTopology(sys.argv[1] if len(sys.argv) > 1 else "5g-split-ai", ues=16).start()
        print(" ".join([*cell.ue_namespaces, cell.ns_edge, cell.ns_link]), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    made = done.stdout.split()
    assert len(made) == 18, done.stderr
    assert set(made) <= set(list_namespaces())  # SIGKILL: nothing ran its cleanup
    with CellTopology("5g-split-ai", ues=1) as cell:
        assert set(made) <= set(cell.swept)
    assert not set(made) & set(list_namespaces())
