"""Queue disciplines: which packet goes when the queue is full, and CoDel's control of the standing queue."""

from __future__ import annotations

import pytest

from netem.errors import LinkError
from netem.link.queues import DEFAULT_QUEUE_PACKETS, CoDel, DropHead, DropTail, make_queue
from netem.link.stages import Item, RateStage
from netem.profile import DEFAULT_QUEUE_PACKETS as PROFILE_DEFAULT_QUEUE_PACKETS

MS = 1_000_000


def test_droptail_refuses_the_arriving_packet() -> None:
    queue = DropTail(limit_packets=2)
    assert queue.enqueue((0, 0, b"a"), 0) and queue.enqueue((0, 0, b"b"), 0)
    assert not queue.enqueue((0, 0, b"c"), 0)
    assert [queue.dequeue(0)[2], queue.dequeue(0)[2]] == [b"a", b"b"]  # type: ignore[index]
    assert queue.dequeue(0) is None
    assert queue.drops == {"queue_overflow": 1}


def test_drophead_drops_the_oldest_to_make_room() -> None:
    queue = DropHead(limit_packets=2)
    for frame in (b"a", b"b", b"c"):
        assert queue.enqueue((0, 0, frame), 0)
    assert [queue.dequeue(0)[2], queue.dequeue(0)[2]] == [b"b", b"c"]  # type: ignore[index]
    assert queue.drops == {"queue_overflow": 1}


def test_unlimited_profile_gets_the_linux_default_limit() -> None:
    assert DEFAULT_QUEUE_PACKETS == PROFILE_DEFAULT_QUEUE_PACKETS == DropTail().limit_packets


def test_queue_limits_and_names_are_checked() -> None:
    with pytest.raises(LinkError, match="packets"):
        DropTail(limit_packets=0)
    with pytest.raises(LinkError, match="unknown queue discipline"):
        make_queue("red", 10, None)
    assert isinstance(make_queue("codel", None, 10_000), CoDel)


def _offer(queue: DropTail, offered_mbit: float, seconds: float) -> RateStage:
    """``offered_mbit`` of full frames, evenly spaced, into a 10 Mbit/s link for ``seconds``."""
    stage = RateStage(10e6, queue)
    gap = int(1514 * 8 / (offered_mbit * 1e6) * 1e9)
    now = 0
    out: list[Item] = []
    while now < seconds * 1e9:
        stage.enqueue((now, now, bytes(1514)))
        stage.dequeue(now, out)
        now += gap
    return stage


def test_codel_bounds_the_standing_queue_where_droptail_fills_up() -> None:
    # An unresponsive 12 Mbit/s flow into 10 Mbit/s for 10 s: droptail lets 1000 packets (1.2 s) build up;
    # CoDel drops at a rising rate until the drop rate matches the excess, so the delay stays far lower.
    droptail = _offer(DropTail(limit_packets=1000), 12.0, 10.0)
    codel = _offer(CoDel(limit_packets=1000), 12.0, 10.0)
    assert codel.drops.get("aqm", 0) > 0 and codel.drops.get("queue_overflow", 0) == 0
    assert droptail.queue_delay.max_us > 1_100_000
    assert codel.queue_delay.max_us < 400_000
    assert codel.queue_delay.total_us / codel.queue_delay.count < droptail.queue_delay.total_us / droptail.queue_delay.count / 3


def test_codel_does_not_drop_when_the_link_keeps_up() -> None:
    codel = _offer(CoDel(limit_packets=1000), 9.0, 5.0)
    assert codel.drops.get("aqm", 0) == 0
    assert codel.queue_delay.max_us < 5_000
