"""Where in its capacity trace each repetition of a sweep point starts, on a trace-driven profile.

A sweep measures its points one after another. On a link that follows a trace, point A would meet the trace's
first seconds and point B the next ones, so partitions would be compared on different capacities, and a resumed
sweep would meet yet others. Instead, before repetition k of n (and before the warm-ups that precede it) the
sweep restarts the trace k/n of its period in (`TraceRef.start_s`, applied as a live link update): every point
meets the same n stretches of the trace, spread evenly over all of it (stratified), which is also what the
advisor predicts from (the median over start phases, splitbed.advise). Each record's `link.profile` carries the
`start_s` it ran at.
"""

from __future__ import annotations

import dataclasses
import functools

from netem.profile import DirectionProfile, LinkProfile
from netem.trace import load


def is_trace_driven(profile: LinkProfile) -> bool:
    return profile.uplink.trace is not None or profile.downlink.trace is not None


@functools.lru_cache(maxsize=16)
def _period_s(path: str, kind: str) -> float:
    return load(path, kind).period_ms / 1000.0


def start_s(period_s: float, repetition: int, repetitions: int) -> float:
    """Repetition k of n starts k/n of the period into the trace (k wraps past n: extra repetitions reuse)."""
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    return period_s * (repetition % repetitions) / repetitions


def at_repetition(profile: LinkProfile, repetition: int, repetitions: int) -> LinkProfile:
    """`profile` with every trace starting where repetition `repetition` of `repetitions` belongs."""

    def placed(direction: DirectionProfile) -> DirectionProfile:
        if direction.trace is None:
            return direction
        period = _period_s(direction.trace.path, direction.trace.kind)
        return dataclasses.replace(direction,
                                   trace=direction.trace.starting_at(start_s(period, repetition, repetitions)))

    return profile.replace(uplink=placed(profile.uplink), downlink=placed(profile.downlink))
