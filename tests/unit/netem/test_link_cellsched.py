"""Per-UE schedulers of a shared cell (netem.link.cellsched): who the shared transmitter serves next."""

from __future__ import annotations

import struct

import pytest

from netem.link.cellsched import IPV4_DST_OFFSET, ProportionalFair, RoundRobin, key_text, ue_key
from netem.link.queues import make_queue
from netem.link.stages import RateStage

MS = 1_000_000


def frame(ue: int, size: int) -> bytes:
    """An Ethernet + IPv4 frame of `size` bytes from 198.18.0.(10 + ue) to 198.18.0.2."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size - 14, 0, 0, 64, 6, 0, bytes([198, 18, 0, 10 + ue]),
                     bytes([198, 18, 0, 2]))
    return b"\x02" * 12 + b"\x08\x00" + ip + b"\x00" * (size - 34)


def served_bytes(queue: RoundRobin | ProportionalFair, count: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for _ in range(count):
        entry = queue.dequeue(0)
        assert entry is not None
        key = key_text(ue_key(entry[2]))
        out[key] = out.get(key, 0) + len(entry[2])
    return out


def test_ue_key_reads_the_ipv4_source_and_lumps_other_frames() -> None:
    assert key_text(ue_key(frame(3, 100))) == "198.18.0.13"
    assert key_text(ue_key(frame(3, 100), IPV4_DST_OFFSET)) == "198.18.0.2"
    assert key_text(ue_key(b"\xff" * 12 + b"\x08\x06" + b"\x00" * 28)) == "other"  # ARP


@pytest.mark.parametrize("cls", [RoundRobin, ProportionalFair])
def test_backlogged_ues_get_equal_bytes_whatever_their_frame_sizes(cls: type) -> None:
    """UE 0 sends full frames, UE 1 small ones: a frame-count round robin would give UE 0 ~5x the bytes."""
    queue = cls(limit_packets=10_000)
    for _ in range(2000):
        queue.enqueue((0, 0, frame(0, 1514)), 0)
    for _ in range(10_000):
        queue.enqueue((0, 0, frame(1, 300)), 0)
    got = served_bytes(queue, 3000)
    share = got["198.18.0.10"] / (got["198.18.0.10"] + got["198.18.0.11"])
    assert 0.45 <= share <= 0.55, got


def test_round_robin_alternates_full_frames_and_a_lone_ue_gets_everything() -> None:
    queue = RoundRobin()
    for ue in (0, 0, 0, 1, 1, 1):
        queue.enqueue((0, 0, frame(ue, 1514)), 0)
    order = [ue_key(queue.dequeue(0)[2])[3] - 10 for _ in range(6)]  # type: ignore[index]
    assert order == [0, 1, 0, 1, 0, 1]
    assert queue.dequeue(0) is None and len(queue) == 0 and queue.size_bytes == 0
    queue.enqueue((0, 0, frame(2, 1514)), 0)
    assert ue_key(queue.dequeue(0)[2])[3] == 12  # type: ignore[index]


def test_proportional_fair_lets_an_idle_ue_catch_up_first() -> None:
    queue = ProportionalFair(limit_packets=10_000)
    for _ in range(200):
        queue.enqueue((0, 0, frame(0, 1514)), 0)
    served_bytes(queue, 100)  # UE 0 alone: its average grows
    for _ in range(50):
        queue.enqueue((1, 0, frame(1, 1514)), 1)
    first = served_bytes(queue, 20)
    assert first == {"198.18.0.11": 20 * 1514}  # the UE with the lower average goes first


def test_limits_are_per_ue_so_one_backlog_never_starves_another() -> None:
    queue = RoundRobin(limit_packets=3)
    assert all(queue.enqueue((0, 0, frame(0, 100)), 0) for _ in range(3))
    assert not queue.enqueue((0, 0, frame(0, 100)), 0)
    assert queue.enqueue((0, 0, frame(1, 100)), 0)
    assert queue.drops == {"queue_overflow": 1}
    drained = queue.drain()
    assert len(drained) == 4 and len(queue) == 0 and queue.size_bytes == 0


def test_behind_a_rate_stage_the_shares_are_the_schedulers() -> None:
    """Two UEs keep the 8 Mbit/s stage busy for 1 s: each is sent ~4 Mbit/s worth of frames."""
    stage = RateStage(8e6, make_queue("rr", 10_000, None))
    for _ in range(700):
        stage.enqueue((0, 0, frame(0, 1514)))
        stage.enqueue((0, 0, frame(1, 1514)))
    out: list = []
    stage.dequeue(1000 * MS, out)
    per_ue = stage.queue.per_ue()  # type: ignore[attr-defined]
    sent = {k: v["bytes"] for k, v in per_ue.items()}
    total = sum(len(item[2]) for item in out)
    assert total == pytest.approx(1e6, rel=0.01)  # the shared rate is the profile's
    assert abs(sent["198.18.0.10"] - sent["198.18.0.11"]) <= 1514
