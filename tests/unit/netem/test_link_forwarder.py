"""The forwarder's event loop and control channel over real unix datagram sockets (no root, no namespaces).

Each side of the link is a socketpair: the test writes frames into one end, the forwarder reads the other, so
the loop, the pipelines, the size checks and the JSON control protocol run exactly as in the link process;
only the AF_PACKET sockets are replaced (integration tests cover those).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from netem.errors import LinkError
from netem.link import control
from netem.link.forwarder import Forwarder
from netem.link.options import ForwarderOptions
from netem.link.timing import SpinBudget
from netem.profile import DirectionProfile, LinkProfile

OPTIONS = ForwarderOptions(realtime_priority=0)


def profile(name: str = "t", **uplink: Any) -> LinkProfile:
    return LinkProfile(name, "test", "test", DirectionProfile(**uplink), DirectionProfile())


@dataclass
class Rig:
    forwarder: Forwarder
    ue: socket.socket  # the ue host's end: write uplink frames, read downlink frames
    edge: socket.socket
    ctl: socket.socket
    buffer: control.LineBuffer
    thread: threading.Thread

    def request(self, message: dict[str, Any] | bytes) -> dict[str, Any]:
        self.ctl.sendall(message if isinstance(message, bytes) else control.encode(message))
        return control.read_message(self.ctl, self.buffer, 10.0)

    def receive(self, sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, float]:
        sock.settimeout(timeout)
        data = sock.recv(70000)
        return data, time.monotonic()


@pytest.fixture
def make_rig() -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(link_profile: LinkProfile, start: bool = True, **kw: Any) -> Rig:
        ue_host, ue_link = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        edge_host, edge_link = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ctl_parent, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for sock in (ue_link, edge_link):
            sock.setblocking(False)
        forwarder = Forwarder(ue_link, edge_link, link_profile, options=OPTIONS, packet_sockets=False, **kw)
        thread = threading.Thread(target=forwarder.serve, args=(ctl_child,), daemon=True)
        if start:
            thread.start()
        rig = Rig(forwarder, ue_host, edge_host, ctl_parent, control.LineBuffer(), thread)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        if not rig.thread.is_alive() and rig.thread.ident is None:
            rig.thread.start()
        if rig.thread.is_alive():
            rig.request({"op": "stop"})
        rig.thread.join(5)
        assert not rig.thread.is_alive()
        for sock in (rig.ue, rig.edge, rig.ctl, rig.forwarder.ue_sock, rig.forwarder.edge_sock):
            sock.close()


def test_ideal_link_forwards_both_directions_unchanged_and_in_order(make_rig: Any) -> None:
    rig = make_rig(profile())
    frames = [bytes([i]) * (60 + i) for i in range(50)]
    for frame in frames:
        rig.ue.send(frame)
    assert [rig.receive(rig.edge)[0] for _ in frames] == frames
    rig.edge.send(b"reply" * 20)
    assert rig.receive(rig.ue)[0] == b"reply" * 20
    stats = rig.request({"op": "stats"})["stats"]
    assert stats["uplink"]["tx_packets"] == 50 and stats["uplink"]["fast_path"]
    assert stats["uplink"]["tx_bytes"] == sum(map(len, frames))
    assert stats["downlink"]["rx_packets"] == 1


def test_delayed_link_never_delivers_early(make_rig: Any) -> None:
    rig = make_rig(profile(delay_ms=30.0))
    sent = []
    for i in range(10):
        sent.append(time.monotonic())
        rig.ue.send(bytes([i]) * 100)
        time.sleep(0.005)
    for i in range(10):
        data, at = rig.receive(rig.edge)
        assert data == bytes([i]) * 100
        assert at - sent[i] >= 0.030
        assert at - sent[i] < 0.5  # generous: a unit test on a shared CPU
    stats = rig.request({"op": "stats"})["stats"]
    uplink = stats["uplink"]
    assert uplink["stages"] == ["delay"] and uplink["sojourn_ms"]["count"] == 10
    assert uplink["sojourn_ms"]["p50"] >= 30.0
    # the loop slept until due times (select timed out) and says how punctual that was and how long it worked
    assert stats["oversleep_ms"]["count"] >= 1 and stats["busy_ms"]["count"] >= 10


def test_delay_counts_from_the_kernel_receive_stamp_not_from_when_the_loop_read_it(make_rig: Any) -> None:
    rig = make_rig(profile(delay_ms=100.0), start=False)
    assert rig.forwarder._timestamps
    sent = time.monotonic()
    rig.ue.send(b"early" * 10)
    time.sleep(0.06)  # the loop is not running yet: the frame waits in the socket for 60 ms
    rig.thread.start()
    data, at = rig.receive(rig.edge)
    assert data == b"early" * 10
    assert 0.100 <= at - sent < 0.150  # 100 ms after it was sent, not 100 ms after the loop read it
    stats = rig.request({"op": "stats"})["stats"]
    assert stats["kernel_timestamps"] and stats["uplink"]["sojourn_ms"]["p50"] >= 100.0


def test_oversize_frames_are_dropped_counted_and_explained(make_rig: Any) -> None:
    rig = make_rig(profile(), max_frame_edge=1514)
    rig.ue.send(bytes(1514))
    rig.ue.send(bytes(3000))
    tagged = bytearray(1518)
    tagged[12:14] = b"\x81\x00"  # 802.1Q: may be 4 bytes longer
    rig.ue.send(bytes(tagged))
    assert len(rig.receive(rig.edge)[0]) == 1514
    assert len(rig.receive(rig.edge)[0]) == 1518
    stats = rig.request({"op": "stats"})["stats"]
    assert stats["uplink"]["dropped"]["oversize"] == 1
    assert "turn off GRO/GSO/TSO" in stats["notes"][0]


def test_update_changes_the_profile_live_and_keeps_queued_frames(make_rig: Any) -> None:
    rig = make_rig(profile(delay_ms=10_000.0))
    rig.ue.send(b"held" * 10)
    time.sleep(0.05)
    reply = rig.request({"op": "update", "profile": profile("fast").to_dict()})
    assert reply == {"ok": True, "carried": {"uplink": 1, "downlink": 0}, "profile": "fast"}
    assert rig.receive(rig.edge, timeout=2.0)[0] == b"held" * 10
    stats = rig.request({"op": "stats"})["stats"]
    assert stats["profile"] == "fast" and stats["updates"] == 1 and stats["uplink"]["fast_path"]


def test_bad_requests_get_errors_and_the_link_keeps_running(make_rig: Any) -> None:
    rig = make_rig(profile(delay_ms=1.0))
    assert "not a JSON line" in rig.request(b"{nope\n")["error"]
    assert "expected a JSON object" in rig.request(b"[1, 2]\n")["error"]
    assert "unknown op" in rig.request({"op": "explode"})["error"]
    bad = profile().to_dict()
    bad["uplink"]["loss"] = {"model": "random", "p": 2.0}
    reply = rig.request({"op": "update", "profile": bad})
    assert not reply["ok"] and "loss.p" in reply["error"]
    assert rig.request({"op": "stats"})["stats"]["profile"] == "t"
    rig.ue.send(b"still works")
    assert rig.receive(rig.edge)[0] == b"still works"


def test_overlong_control_line_is_refused_without_buffering_it(make_rig: Any) -> None:
    rig = make_rig(profile())
    rig.ctl.sendall(b"x" * (control.MAX_LINE_BYTES + 10))
    reply = control.read_message(rig.ctl, rig.buffer, 10.0)
    assert "longer than" in reply["error"]
    rig.ctl.sendall(b"\n")  # ends the refused line; the channel works again
    assert rig.request({"op": "ping"}) == {"ok": True}


def test_stop_returns_final_stats_and_ends_the_loop(make_rig: Any) -> None:
    rig = make_rig(profile())
    rig.ue.send(b"one")
    rig.receive(rig.edge)
    reply = rig.request({"op": "stop"})
    assert reply["ok"] and reply["stats"]["uplink"]["tx_packets"] == 1
    rig.thread.join(5)
    assert not rig.thread.is_alive()


def test_closing_the_control_channel_stops_the_loop(make_rig: Any) -> None:
    rig = make_rig(profile())
    rig.ctl.shutdown(socket.SHUT_WR)
    rig.thread.join(5)
    assert not rig.thread.is_alive()


def test_options_are_validated_and_json_round_trip() -> None:
    options = ForwarderOptions(batch=64, spin_us=0, realtime_priority=0)
    assert ForwarderOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    with pytest.raises(LinkError, match="unknown forwarder option"):
        ForwarderOptions.from_dict({"turbo": True})
    with pytest.raises(LinkError, match="must be int"):
        ForwarderOptions.from_dict({"batch": "8"})
    with pytest.raises(LinkError, match="realtime_priority"):
        ForwarderOptions(realtime_priority=100)


def test_spin_budget_spins_only_near_due_times_and_only_while_it_has_slept_enough() -> None:
    budget = SpinBudget(spin_ns=200_000, min_sleep=0.15)
    assert budget.timeout(None, 0) is None
    assert budget.timeout(1_000_000, 0) == pytest.approx(0.0008)  # sleep until 200 us before due
    budget.slept(800_000)
    assert budget.timeout(100_000, 1_000_000) == 0.0  # within the spin window: busy-poll
    # 50 ms later with only 0.8 ms slept: the budget is spent, so it sleeps to the due time itself
    assert budget.timeout(100_000, 50_000_000) == pytest.approx(0.0001)
    assert budget.capped == 1
    # a new 100 ms window starts afresh
    assert budget.timeout(100_000, 100_000_001) == 0.0
    assert budget.timeout(-5, 100_000_002) == 0.0  # overdue: no sleep at all
