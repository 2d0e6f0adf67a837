"""Which realisation of the link each inference of a sweep point meets: its own draw of loss and jitter (seeds
from netem.seeds) and, on a trace-driven profile, its place in the trace (trace_phases).

Draw k of a point is the point's k-th measured inference, counting the error records too (a failed inference
used its draw; the retry takes the next), so a sweep run again, or resumed, gives every inference the draw it
had. Before each measured inference the sweep applies `link_for(...)` as a live link update; the point's
warm-ups run on the draw of the inference that follows them. Each record carries `tags.draw` and
`tags.realisation` (the seeds and what they were derived from), and its `link.profile` the seeds in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netem.errors import ProfileError
from netem.profile import LinkProfile, loss_from_dict
from netem.seeds import DERIVATION, LINK_STREAMS, is_random, reseeded
from splitbed.sweep.trace_phases import at_repetition, is_trace_driven


@dataclass(frozen=True)
class Realisation:
    """The link one inference runs on; `profile` is None when the link has nothing random and no trace."""

    profile: LinkProfile | None
    tag: dict[str, Any]


def varies(profile: LinkProfile) -> bool:
    """Whether repetitions of a point meet different links at all (random draws or a trace)."""
    return is_random(profile) or is_trace_driven(profile)


def link_for(base: LinkProfile, point_key: str, draw: int, repetition: int, repetitions: int) -> Realisation:
    """The link for draw `draw` (seeds) of the point, placed where repetition `repetition` of `repetitions`
    belongs in its trace."""
    tag: dict[str, Any] = {"draw": draw}
    profile: LinkProfile | None = None
    if is_random(base):
        profile = reseeded(base, point_key, draw)
        tag["seeds"] = {which: getattr(profile, which).seed for which in LINK_STREAMS}
        tag["base_seeds"] = {which: getattr(base, which).seed for which in LINK_STREAMS}
        tag["derivation"] = DERIVATION
    if is_trace_driven(base):
        profile = at_repetition(profile or base, repetition, repetitions)
    return Realisation(profile, tag)


def channel_key(record: dict[str, Any]) -> tuple[Any, ...] | None:
    """What identifies the channel realisation a record met (seeds of the random directions, trace starts), or
    None when its link had nothing random and no trace (every repetition met the same link)."""
    link = record.get("link")
    profile = link.get("profile") if isinstance(link, dict) else None
    if not isinstance(profile, dict):
        return None
    parts: list[Any] = []
    for which in LINK_STREAMS:
        direction = profile.get(which)
        if not isinstance(direction, dict):
            continue
        if _random_loss(direction.get("loss")) or (direction.get("jitter_ms") or 0) > 0:
            parts.append((which, "seed", direction.get("seed")))
        trace = direction.get("trace")
        if isinstance(trace, dict):
            parts.append((which, "start_s", trace.get("start_s", 0.0)))
    return tuple(parts) if parts else None


def _random_loss(loss: Any) -> bool:
    if loss is None:
        return False
    try:
        return loss_from_dict(loss).mean_loss > 0
    except ProfileError:
        return False


def independent_draws(records: list[dict[str, Any]]) -> int | None:
    """How many distinct channel realisations `records` rest on; None when the link was deterministic."""
    keys = [channel_key(r) for r in records]
    if not keys or all(k is None for k in keys):
        return None
    return len(set(keys))
