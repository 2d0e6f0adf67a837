"""Who gets a session slot on the remote node, and how long a slot may be held without using it.

A fixed number of slots (`--max-sessions`) and generous timeouts let a few cheap clients lock everybody out:
sessions that configure and then say nothing hold a slot for the whole idle timeout, and a unit dripped a byte at
a time holds one for as long as its length allows. So:

- a unit must keep up with a minimum rate: at any moment its received bytes must justify the time since its
  first byte, `elapsed <= base + received / min_rate` (`Slot.overdue_s`; a transfer at the link's rate with
  stalls shorter than `base` never trips it, a drip is closed `base` seconds after it started);
- when every slot is taken, a new connection evicts the session that wastes its slot most: first the unit
  furthest behind the minimum rate, then the session idle longest (between units, or silent since it
  connected); only sessions behind or idle for at least `evict_after_s` are eligible, so sessions at work are
  never evicted. With none eligible, the newcomer is refused (`busy`);
- every refusal and eviction is returned with its reason for the caller to log and to tell the peer.

Sans-I/O and thread-safe: a session's thread updates its Slot, the accept loop reads them all; no sockets here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class AdmissionRefused(Exception):
    """No slot: every session is at work. `reason` says so, with the figures."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RatePolicy:
    """How long a unit may take: `base_s` of allowance plus its received bytes at `min_rate_bps`."""

    base_s: float
    min_rate_bps: float

    def allowed_s(self, received: int) -> float:
        return self.base_s + received / self.min_rate_bps


@dataclass
class Slot:
    """What admission knows of one session. Written by the session's thread, read by the accept loop."""

    peer: str
    connected: float
    label: str = "-"                 # the session id once configured (already sanitised)
    idle_since: float | None = None  # between units (or since connecting); None while a unit is in progress
    unit_started: float | None = None
    unit_received: int = 0
    evicted: str | None = None       # why the accept loop evicted this session (the session thread acts on it)

    def __post_init__(self) -> None:
        if self.idle_since is None:
            self.idle_since = self.connected

    def unit_begins(self, now: float) -> None:
        self.idle_since, self.unit_started, self.unit_received = None, now, 0

    def unit_progress(self, received: int) -> None:
        self.unit_received = received

    def at_rest(self, now: float) -> None:
        """The last unit and its reply are done: idle from now."""
        self.idle_since, self.unit_started, self.unit_received = now, None, 0

    def behind_s(self, now: float, policy: RatePolicy) -> float:
        """Seconds the current unit is behind the minimum rate (0 between units)."""
        started = self.unit_started
        if started is None:
            return 0.0
        return max(now - started - self.unit_received / policy.min_rate_bps, 0.0)

    def overdue_s(self, now: float, policy: RatePolicy) -> float:
        """Seconds past the time the current unit's received bytes allow (> 0: close it)."""
        started = self.unit_started
        if started is None:
            return 0.0
        return now - started - policy.allowed_s(self.unit_received)

    def idle_s(self, now: float) -> float:
        since = self.idle_since
        return 0.0 if since is None else now - since


@dataclass
class Admission:
    """The session slots of one node."""

    max_sessions: int
    policy: RatePolicy
    evict_after_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _slots: list[Slot] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, peer: str) -> tuple[Slot, Slot | None, str]:
        """A slot for `peer`, the session evicted to make room (or None) and why; AdmissionRefused if none."""
        now = self.clock()
        with self._lock:
            live = [s for s in self._slots if s.evicted is None]
            victim, why = None, ""
            if len(live) >= self.max_sessions:
                victim, why = self._victim(live, now)
                if victim is None:
                    raise AdmissionRefused(
                        f"all {self.max_sessions} sessions are at work (none idle for {self.evict_after_s:g} s or "
                        f"more, none behind the minimum rate of {self.policy.min_rate_bps:g} B/s by as much)")
                victim.evicted = f"evicted to admit a new session: {why}"
            slot = Slot(peer, now)
            self._slots.append(slot)
            return slot, victim, why

    def leave(self, slot: Slot) -> None:
        with self._lock:
            if slot in self._slots:
                self._slots.remove(slot)

    def active(self) -> int:
        """Sessions holding a slot (evicted ones on their way out excluded)."""
        with self._lock:
            return sum(1 for s in self._slots if s.evicted is None)

    def _victim(self, live: list[Slot], now: float) -> tuple[Slot | None, str]:
        behind = max(live, key=lambda s: s.behind_s(now, self.policy))
        lag = behind.behind_s(now, self.policy)
        if lag >= self.evict_after_s:
            return behind, (f"its unit is {lag:.1f} s behind the minimum rate of {self.policy.min_rate_bps:g} B/s "
                            f"({behind.unit_received} bytes in {now - (behind.unit_started or now):.1f} s)")
        idle = max(live, key=lambda s: s.idle_s(now))
        quiet = idle.idle_s(now)
        if quiet >= self.evict_after_s:
            return idle, f"idle for {quiet:.1f} s, the longest of {len(live)} sessions, while the node was full"
        return None, ""
