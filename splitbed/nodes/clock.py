"""The measurement clock shared by both nodes, and the clock-offset estimate for nodes on separate hosts.

Every timestamp the nodes exchange is CLOCK_MONOTONIC in integer nanoseconds (`time.monotonic_ns()`), which
never jumps with NTP or the wall clock. Two processes on one Linux host read the same CLOCK_MONOTONIC, so
their timestamps subtract directly; the nodes detect this by comparing kernel boot ids (and by checking that
the measured offset is zero within its uncertainty, which catches time namespaces). On separate hosts the
offset is estimated NTP-style from ping-pongs in the configuration stage, using the sample with the smallest
round trip; its uncertainty is half that round trip (the bound on any asymmetry between the two directions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
CLOCK_NAME = "CLOCK_MONOTONIC"

# Slack added to the uncertainty before same-boot hosts are declared NOT to share the clock: scheduling noise of
# the ping-pong itself, well above what a shared clock shows and far below a time namespace's typical offset.
SAME_CLOCK_SLACK_NS = 2_000_000


def now_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds: the one clock every node timestamp uses."""
    return time.monotonic_ns()


def boot_id() -> str:
    """This kernel's boot id; equal boot ids mean one host (one CLOCK_MONOTONIC, time namespaces aside)."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class PingSample:
    """One ping-pong: t1 local send, t2 remote receive, t3 remote send, t4 local receive (each its own clock)."""

    t1_ns: int
    t2_ns: int
    t3_ns: int
    t4_ns: int

    @property
    def rtt_ns(self) -> int:
        """Round trip minus the remote's turnaround."""
        return (self.t4_ns - self.t1_ns) - (self.t3_ns - self.t2_ns)

    @property
    def offset_ns(self) -> int:
        """Remote clock minus local clock, assuming symmetric one-way delays."""
        return ((self.t2_ns - self.t1_ns) + (self.t3_ns - self.t4_ns)) // 2


@dataclass(frozen=True)
class OffsetEstimate:
    """remote_clock - local_clock, from the min-RTT sample; the true offset lies within +-uncertainty_ns."""

    offset_ns: int
    uncertainty_ns: int
    min_rtt_ns: int
    samples: int


def estimate_offset(samples: list[PingSample]) -> OffsetEstimate:
    """NTP-style estimate over `samples`: the minimum-RTT sample is the one least disturbed by queueing."""
    if not samples:
        raise ValueError("clock offset estimate needs at least one ping-pong sample")
    valid = [s for s in samples if s.rtt_ns >= 0]
    if not valid:
        raise ValueError("every ping-pong sample has a negative round trip: timestamps are inconsistent")
    best = min(valid, key=lambda s: s.rtt_ns)
    return OffsetEstimate(best.offset_ns, (best.rtt_ns + 1) // 2, best.rtt_ns, len(samples))


class ClockRecord(TypedDict):
    """The `clock` section of every metrics record (docs/METRICS.md)."""

    source: str
    method: str
    shared_monotonic: bool
    local_boot_id: str
    remote_boot_id: str
    offset_ns: int
    offset_uncertainty_ns: int
    estimated_offset_ns: int
    estimated_offset_uncertainty_ns: int
    ping_min_rtt_ns: int
    ping_samples: int
    note: str


def decide_clock(local_boot_id: str, remote_boot_id: str, estimate: OffsetEstimate) -> ClockRecord:
    """Choose how remote timestamps map onto the local clock for this session, and say why."""
    same_boot = bool(local_boot_id) and local_boot_id == remote_boot_id
    consistent = abs(estimate.offset_ns) <= estimate.uncertainty_ns + SAME_CLOCK_SLACK_NS
    if same_boot and consistent:
        return ClockRecord(
            source=CLOCK_NAME, method="same-host", shared_monotonic=True,
            local_boot_id=local_boot_id, remote_boot_id=remote_boot_id,
            offset_ns=0, offset_uncertainty_ns=0,
            estimated_offset_ns=estimate.offset_ns, estimated_offset_uncertainty_ns=estimate.uncertainty_ns,
            ping_min_rtt_ns=estimate.min_rtt_ns, ping_samples=estimate.samples,
            note="both nodes on one host (equal boot ids): remote timestamps subtract directly",
        )
    note = ("separate hosts (different boot ids)" if not same_boot else
            "same boot id but the measured offset is not zero (time namespace?)")
    return ClockRecord(
        source=CLOCK_NAME, method="ntp-min-rtt", shared_monotonic=False,
        local_boot_id=local_boot_id, remote_boot_id=remote_boot_id,
        offset_ns=estimate.offset_ns, offset_uncertainty_ns=estimate.uncertainty_ns,
        estimated_offset_ns=estimate.offset_ns, estimated_offset_uncertainty_ns=estimate.uncertainty_ns,
        ping_min_rtt_ns=estimate.min_rtt_ns, ping_samples=estimate.samples,
        note=note + ": remote timestamps mapped with the min-RTT ping-pong offset, +-RTT/2",
    )


def to_local_ns(remote_ns: int, clock: ClockRecord) -> int:
    """A remote timestamp expressed on the local clock."""
    return remote_ns - clock["offset_ns"]
