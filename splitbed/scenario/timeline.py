"""The scheduler that applies a scenario's link events to a running link, on time, from its own thread.

Every applied change is logged with the CLOCK_MONOTONIC nanoseconds just before and just after the live update
(`time.monotonic_ns()`: the same clock as the nodes' record timestamps on this host), so plots and records line
up. Waits are bounded: `stop()` interrupts the wait at once and joins the thread within a timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from netem.profile import DirectionProfile, LinkProfile
from splitbed.scenario.spec import LinkEvent

log = logging.getLogger(__name__)

STOP_JOIN_S = 30.0  # a live update is one request to the link process (its own timeout is shorter)


@dataclass(frozen=True)
class AppliedEvent:
    """A link event as it happened: when the update was asked for and when it returned, and any error."""

    event: LinkEvent
    start_ns: int
    done_ns: int
    error: str | None = None

    def to_dict(self, t0_ns: int) -> dict[str, Any]:
        return {"at_s": self.event.at_s, "applied_s": (self.start_ns - t0_ns) / 1e9,
                "done_s": (self.done_ns - t0_ns) / 1e9, "late_ms": (self.start_ns - t0_ns) / 1e6
                - self.event.at_s * 1e3, "update_ms": (self.done_ns - self.start_ns) / 1e6,
                "kind": self.event.kind, "label": self.event.label, "step": self.event.step,
                "profile": self.event.profile.name, "uplink_capacity_mbit": uplink_capacity(self.event),
                "input_size": None if self.event.input_size is None else list(self.event.input_size),
                "start_ns": self.start_ns, "done_ns": self.done_ns, "error": self.error}


def uplink_capacity(event: LinkEvent) -> float | str | None:
    """What the uplink can carry after the event: Mbit/s, 0 in an outage, `trace` or None (unshaped)."""
    if event.kind == "outage_start":
        return 0.0
    return direction_capacity(event.profile.uplink)


def direction_capacity(direction: DirectionProfile) -> float | str | None:
    if direction.trace is not None:
        return "trace"
    if direction.loss is not None and direction.loss.mean_loss >= 1.0:
        return 0.0
    return direction.rate_mbit


class Timeline:
    """Applies `events` at t0 + at_s by calling `apply(profile)` (`on_workload(event)` for a workload change);
    see the module docstring."""

    def __init__(self, events: Sequence[LinkEvent], apply: Callable[[LinkProfile], None],
                 on_workload: Callable[[LinkEvent], None] | None = None) -> None:
        self.events = list(events)
        self.apply = apply
        self.on_workload = on_workload  # called instead of `apply` for workload events (input_size)
        self.t0_ns: int | None = None
        self._applied: list[AppliedEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, t0_ns: int | None = None) -> int:
        """Start the clock (now, or at `t0_ns`) and the thread; returns t0 in monotonic ns."""
        if self._thread is not None:
            raise RuntimeError("this timeline was already started")
        self.t0_ns = time.monotonic_ns() if t0_ns is None else t0_ns
        self._thread = threading.Thread(target=self._run, name="scenario-timeline", daemon=True)
        self._thread.start()
        return self.t0_ns

    def stop(self, timeout_s: float = STOP_JOIN_S) -> None:
        """Apply nothing more; wait for an update in progress to return."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"the scenario timeline did not stop within {timeout_s:g} s (a live link update "
                                   "is hanging)")

    @property
    def applied(self) -> list[AppliedEvent]:
        with self._lock:
            return list(self._applied)

    @property
    def errors(self) -> list[AppliedEvent]:
        return [a for a in self.applied if a.error is not None]

    def _run(self) -> None:
        assert self.t0_ns is not None
        for event in self.events:
            due_ns = self.t0_ns + int(event.at_s * 1e9)
            while True:
                left = (due_ns - time.monotonic_ns()) / 1e9
                if left <= 0 or self._stop.wait(min(left, 1.0)):
                    break
            if self._stop.is_set():
                return
            start = time.monotonic_ns()
            error = None
            try:
                if event.kind == "input_size":
                    if self.on_workload is not None:
                        self.on_workload(event)
                else:
                    self.apply(event.profile)
            except Exception as exc:  # recorded, and the scenario reports it: a change that did not happen
                error = f"{type(exc).__name__}: {exc}"
                log.error("scenario link change %r failed: %s", event.label, error)
            with self._lock:
                self._applied.append(AppliedEvent(event, start, time.monotonic_ns(), error))
