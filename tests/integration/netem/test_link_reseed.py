"""Repetitions meet different loss patterns through the real userspace link, reseeded live the way the sweep
does it (netem.seeds.reseeded + Topology.update): a fixed sequence of numbered UDP datagrams crosses a lossy
uplink once per draw, and which datagrams were lost is read at the receiver. The same draw loses exactly the
same datagrams again; another draw loses others."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from netem.link.fidelity import binomial_interval
from netem.profile import DirectionProfile, LinkProfile, RandomLoss
from netem.seeds import reseeded
from netem.topology import Topology

pytestmark = [pytest.mark.root, pytest.mark.requires("netns"), pytest.mark.timeout(120)]

COUNT = 400
LOSS = 0.2
PORT = 5490

RECEIVER = """
import json, socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
sock.settimeout(10.0)
seen = []
try:
    while len(seen) < int(sys.argv[3]):
        data = sock.recv(64)
        seen.append(int(data.split(b" ")[0]))
        sock.settimeout(1.5)
except socket.timeout:
    pass
print(json.dumps(seen), flush=True)
"""

SENDER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    sock.sendto(b"%d datagram" % i, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.0005)
"""


def lost_datagrams(topo: Topology) -> list[int]:
    receiver = topo.popen("edge", [sys.executable, "-c", RECEIVER, topo.edge_addr, str(PORT), str(COUNT)],
                          stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    topo.run("ue", [sys.executable, "-c", SENDER, topo.edge_addr, str(PORT), str(COUNT)], timeout=60, check=True)
    out, _ = receiver.communicate(timeout=30)
    received = json.loads(out)
    assert received == sorted(received), "the link reordered datagrams it should not"
    return sorted(set(range(COUNT)) - set(received))


def test_each_draw_loses_its_own_datagrams_and_the_same_draw_the_same_ones() -> None:
    base = LinkProfile("lossy-reseed", "reseed test", "tests/integration/netem/test_link_reseed.py",
                       DirectionProfile(loss=RandomLoss(LOSS)), DirectionProfile())
    key = "lossy-reseed|mobilenet_v2|x|tlv|none|builtin:chelsea|random:0|userspace|process"
    with Topology(base, backend="userspace") as topo:
        patterns = []
        for draw in (0, 1, 2, 0):
            topo.update(reseeded(base, key, draw))
            time.sleep(0.05)
            patterns.append(lost_datagrams(topo))
        dropped = topo.stats()["link"]["uplink"]["dropped"]
    low, high = binomial_interval(COUNT, LOSS, 0.999)
    print("lost per draw:", [len(p) for p in patterns], "first lost of each:", [p[:8] for p in patterns])
    assert all(low <= len(p) <= high for p in patterns), [len(p) for p in patterns]
    assert dropped["loss"] == sum(len(p) for p in patterns)  # every missing datagram is one the link chose to lose
    assert patterns[3] == patterns[0]  # draw 0 again: exactly the same datagrams
    assert patterns[0] != patterns[1] and patterns[1] != patterns[2] and patterns[0] != patterns[2]
    overlap = len(set(patterns[0]) & set(patterns[1]))
    # independent draws share about LOSS x |lost| datagrams; the same sequence would share all of them
    assert overlap < 0.5 * len(patterns[0]), overlap
