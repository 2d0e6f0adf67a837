"""Seeds for independent repetitions: every repetition of a measured point draws its own realisation of each
random stream (the link's loss and jitter per direction, later a workload's arrival times), and the same sweep
run again draws exactly the same ones.

A profile's `seed` alone would give every repetition the same channel: the loss stage's generator restarts
from it, so the same packets (by arrival order) are lost every time, and a median over n repetitions would
describe one draw of the channel, n times. Instead the seed of stream S in repetition k of point P is

    derive_seed(base_seed, P, k, S) = first 63 bits of BLAKE2b-64(JSON [base_seed, P, k, S], person "splitbed/rep")

with `base_seed` the profile's own seed for that stream (so changing a profile's seed still changes every draw).
BLAKE2b (hashlib) is the same on every platform and Python version, unlike `hash()`; the JSON list keeps the
four inputs apart (no "a|b" + "c" = "a" + "b|c" collisions). Streams named here: `link.uplink`,
`link.downlink` (netem.link seeds loss and jitter of a direction from its seed), `workload.arrivals`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from netem.profile import MAX_SEED, DirectionProfile, LinkProfile

DERIVATION = "blake2b-64(json[base_seed, point_key, repetition, stream]) & (2^63 - 1)"
LINK_STREAMS = {"uplink": "link.uplink", "downlink": "link.downlink"}
WORKLOAD_ARRIVALS = "workload.arrivals"
MAX_KEY_CHARS = 4096


def derive_seed(base_seed: int, point_key: str, repetition: int, stream: str) -> int:
    """The seed of `stream` in repetition `repetition` of the point `point_key` (0 <= seed <= MAX_SEED)."""
    if isinstance(base_seed, bool) or not isinstance(base_seed, int) or base_seed < 0:
        raise ValueError(f"base_seed must be an integer >= 0, got {base_seed!r}")
    if isinstance(repetition, bool) or not isinstance(repetition, int) or repetition < 0:
        raise ValueError(f"repetition must be an integer >= 0, got {repetition!r}")
    for name, text in (("point_key", point_key), ("stream", stream)):
        if not isinstance(text, str) or not text or len(text) > MAX_KEY_CHARS:
            raise ValueError(f"{name} must be a non-empty string of at most {MAX_KEY_CHARS} characters")
    material = json.dumps([base_seed, point_key, repetition, stream], separators=(",", ":")).encode()
    digest = hashlib.blake2b(material, digest_size=8, person=b"splitbed/rep").digest()
    return int.from_bytes(digest, "big") & MAX_SEED


def has_random_draws(direction: DirectionProfile) -> bool:
    """True when the direction draws random numbers (loss or jitter), so its seed changes what it does."""
    return direction.jitter_ms > 0 or (direction.loss is not None and direction.loss.mean_loss > 0)


def is_random(profile: LinkProfile) -> bool:
    return has_random_draws(profile.uplink) or has_random_draws(profile.downlink)


def reseeded(profile: LinkProfile, point_key: str, repetition: int) -> LinkProfile:
    """`profile` with each direction's seed derived for this repetition of this point (from its own seed)."""
    changes = {}
    for which, stream in LINK_STREAMS.items():
        direction: DirectionProfile = getattr(profile, which)
        changes[which] = dataclasses.replace(direction,
                                             seed=derive_seed(direction.seed, point_key, repetition, stream))
    return profile.replace(**changes)
