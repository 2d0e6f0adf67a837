"""Fuzzing: random and mutated streams produce only the format's own events, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from format_fuzz import MAX_DECODED, MAX_UNIT, fuzz, run_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbed.format import Aips, encode_aips, encode_data_bytes


def test_seeded_mutation_fuzz() -> None:
    """5,000 seeded cases (2-12 s): mutated golden/hostile vectors and random units."""
    seen = fuzz(cases=5_000, seed=20240611, time_limit=300)
    # The mutations reach deep into the decoder, not just the framing.
    assert seen.get("TensorsDecoded", 0) > 250
    assert seen.get("AipsActivated", 0) > 1000
    assert len([k for k in seen if k.islower()]) >= 25, seen


@pytest.mark.slow
def test_long_mutation_fuzz() -> None:
    fuzz(cases=300_000, seed=7, time_limit=600)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), seed=st.integers(0, 2**32 - 1))
def test_arbitrary_bytes(data: bytes, seed: int) -> None:
    import random

    run_case(data, random.Random(seed))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(units=st.lists(st.tuples(st.sampled_from([0, 1, 2, 9]), st.binary(max_size=80)), max_size=5),
       seed=st.integers(0, 2**32 - 1))
def test_arbitrary_values_in_valid_frames(units: list[tuple[int, bytes]], seed: int) -> None:
    import random

    valid = Aips.for_arrays(1, 0, [np.ones(3, np.float32)])
    prefix = encode_aips(valid) + encode_data_bytes(valid, [np.ones(3, np.float32)])
    body = b"".join(bytes([t]) + len(v).to_bytes(4, "big") + v for t, v in units)
    run_case(prefix + body, random.Random(seed))


def test_caps_used_by_the_fuzzer_are_small() -> None:
    assert MAX_UNIT <= 1 << 20 and MAX_DECODED <= 1 << 20
