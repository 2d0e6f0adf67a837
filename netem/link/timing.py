"""When the forwarder runs: timer slack, real-time scheduling, and the budgeted busy-poll before due times."""

from __future__ import annotations

import ctypes
import os

PR_SET_TIMERSLACK = 29


def set_timer_slack(nanoseconds: int) -> bool:
    """Ask the kernel to fire this thread's timers within ``nanoseconds`` (default slack is 50 us)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0)) == 0


def apply_scheduling(priority: int) -> str:
    """Run this process under SCHED_FIFO at ``priority`` (0: leave it alone); says what it got.

    On a busy host a normally scheduled forwarder waits for a CPU for milliseconds and every delay figure is
    off by that much; real-time scheduling lets it run the moment a frame is due. The kernel's RT throttling
    (sched_rt_runtime_us) still leaves other tasks a share of the CPU if the forwarder is saturated.
    """
    if priority <= 0:
        return "SCHED_OTHER (real-time scheduling not requested)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return f"SCHED_OTHER (SCHED_FIFO {priority} refused: {exc.strerror}; delays will suffer on a busy host)"
    return f"SCHED_FIFO {priority}"


class SpinBudget:
    """Decides how long the loop may sleep: until ``spin`` before the next due time, then busy-poll.

    Waking from select costs tens of microseconds to milliseconds on a busy host (this kernel is not
    preemptible); busy-polling the last ``spin_ns`` before a due time removes that error. But a real-time
    process that never sleeps starves the host's normal tasks, and the kernel then freezes it for ~50 ms (RT
    throttling / the fair-class deadline server: measured here as 52-53 ms stalls), which is far worse. So
    the loop may spin only while it has slept at least ``min_sleep`` of the current 100 ms window; otherwise
    it sleeps to the due time itself.
    """

    WINDOW_NS = 100_000_000

    def __init__(self, spin_ns: int, min_sleep: float) -> None:
        self.spin_ns = spin_ns
        self.min_sleep = min_sleep
        self.window_start = 0
        self.slept_ns = 0
        self.spins = 0
        self.capped = 0

    def slept(self, nanoseconds: int) -> None:
        """Account time the loop spent blocked in select."""
        self.slept_ns += nanoseconds

    def timeout(self, wait_ns: int | None, now_ns: int) -> float | None:
        """Seconds for select given the time to the next due event (None: nothing due, block)."""
        elapsed = now_ns - self.window_start
        if elapsed >= self.WINDOW_NS:
            self.window_start = now_ns
            self.slept_ns = 0
            elapsed = 0
        if wait_ns is None:
            return None
        if wait_ns <= 0:
            return 0.0
        if wait_ns > self.spin_ns:
            return (wait_ns - self.spin_ns) / 1e9
        if self.slept_ns >= self.min_sleep * elapsed:
            self.spins += 1
            return 0.0
        self.capped += 1
        return wait_ns / 1e9
