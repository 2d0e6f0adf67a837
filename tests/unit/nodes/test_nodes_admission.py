"""Session slots of the remote node (splitbed.nodes.admission) on a hand-driven clock: who is evicted when the
node is full, who never is, and the reasons given."""

from __future__ import annotations

import pytest

from splitbed.nodes.admission import Admission, AdmissionRefused, RatePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _admission(clock: Clock, slots: int = 3) -> Admission:
    return Admission(slots, RatePolicy(base_s=2.0, min_rate_bps=1000.0), evict_after_s=5.0, clock=clock)


def test_full_node_refuses_while_every_session_is_at_work() -> None:
    clock = Clock()
    adm = _admission(clock)
    slots = [adm.admit(f"peer{i}")[0] for i in range(3)]
    clock.now += 4.0  # idle, but not for evict_after_s
    with pytest.raises(AdmissionRefused, match="all 3 sessions are at work"):
        adm.admit("late")
    for slot in slots:  # receiving units at the minimum rate or faster: never behind, never idle
        slot.unit_begins(clock.now)
    clock.now += 60.0
    for slot in slots:
        slot.unit_progress(60_000)
    with pytest.raises(AdmissionRefused):
        adm.admit("late")
    assert adm.active() == 3


def test_the_unit_furthest_behind_goes_first_then_the_longest_idle() -> None:
    clock = Clock()
    adm = _admission(clock)
    idle_old, _, _ = adm.admit("idle-old")
    clock.now += 1.0
    idle_new, _, _ = adm.admit("idle-new")
    dripper, _, _ = adm.admit("dripper")
    dripper.unit_begins(clock.now)
    clock.now += 7.0
    dripper.unit_progress(100)  # 100 bytes in 7 s at a 1000 B/s minimum: 6.9 s behind
    assert dripper.overdue_s(clock.now, adm.policy) > 0
    _, victim, why = adm.admit("newcomer-1")
    assert victim is dripper and dripper.evicted and "behind the minimum rate" in why
    _, victim, why = adm.admit("newcomer-2")
    assert victim is idle_old and "idle for 8.0 s" in why
    assert adm.active() == 3  # evicted sessions no longer hold a slot, even before they leave
    _, victim, why = adm.admit("newcomer-3")
    assert victim is idle_new and "idle for 7.0 s" in why
    with pytest.raises(AdmissionRefused):  # the three left are fresh
        adm.admit("newcomer-4")
    for slot in (dripper, idle_old, idle_new):
        adm.leave(slot)
    assert adm.active() == 3


def test_unit_deadline_follows_progress_not_length() -> None:
    clock = Clock()
    adm = _admission(clock)
    slot, _, _ = adm.admit("peer")
    slot.unit_begins(clock.now)
    clock.now += 10.0
    slot.unit_progress(8_000)  # 8 s of bytes at the minimum rate + 2 s allowance = 10 s: just in time
    assert slot.overdue_s(clock.now, adm.policy) == pytest.approx(0.0)
    clock.now += 0.5
    assert slot.overdue_s(clock.now, adm.policy) == pytest.approx(0.5)
    slot.at_rest(clock.now)
    assert slot.overdue_s(clock.now, adm.policy) == 0.0 and slot.behind_s(clock.now, adm.policy) == 0.0
