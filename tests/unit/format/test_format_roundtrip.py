"""Round trips over shapes, dtypes, profiles and stream splits (hypothesis): lossless profiles are
bit-exact, lossy ones stay within the bound docs/FORMAT.md section 7 states."""

from __future__ import annotations

import math
import struct

import ml_dtypes
import numpy as np
import pytest
from format_vectors import decode_all
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from splitbed.format import (
    PROFILES,
    Aips,
    AipsActivated,
    DType,
    ErrorCode,
    FormatError,
    TensorsDecoded,
    encode_aips,
    encode_data,
    get_profile,
)
from splitbed.format.data_unit import parse_data_table

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNIT_ROUNDOFF = {DType.FLOAT32: 2.0**-24, DType.FLOAT16: 2.0**-11, DType.BFLOAT16: 2.0**-8, DType.FLOAT64: 2.0**-52}
# Largest magnitude each lossy profile must accept (just below the overflow threshold of its target type).
FP16_SAFE, BF16_SAFE = 65519.0, float(np.float32(3.3e38))

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=6)


SPECIALS = st.sampled_from([np.nan, np.inf, -np.inf])


def float_elements(width: int, profile: str) -> st.SearchStrategy[float]:
    """Values a sender may pass to `profile`: int8 needs finite values (with a finite binary64 span); fp16 and
    bf16 need finite values that do not overflow the 2-byte type (NaN and inf are carried)."""
    if profile.startswith("int8"):
        bound = 1e300 if width == 64 else None
        return st.floats(min_value=-bound if bound else None, max_value=bound, width=width,
                         allow_nan=False, allow_infinity=False)
    limit = {"fp16": FP16_SAFE, "bf16": BF16_SAFE}.get(profile)
    if limit is not None and width > 16:
        return st.floats(-limit, limit, width=width) | SPECIALS
    return st.floats(width=width)


@st.composite
def tensor_and_profile(draw: st.DrawFn) -> tuple[np.ndarray, str]:
    dtype = draw(st.sampled_from(list(DType)))
    shape = draw(shapes)
    # the JPEG profiles carry RGB images only (their own tests: test_format_jpeg.py)
    profile = draw(st.sampled_from([p.name for p in PROFILES.values() if p.applies_to(dtype)
                                    and p.coder.shape_problem(shape) is None and p.coder.lossless]))
    if dtype is DType.BFLOAT16:
        limit = float(np.float32(3.0e38))
        finite = st.floats(-limit, limit, width=32)
        elements = finite if profile.startswith("int8") else finite | SPECIALS
        return draw(hnp.arrays(np.float32, shape, elements=elements)).astype(ml_dtypes.bfloat16), profile
    if dtype.is_float:
        elements = float_elements(8 * dtype.itemsize, profile)
        return draw(hnp.arrays(dtype.numpy, shape, elements=elements)), profile
    return draw(hnp.arrays(dtype.numpy, shape)), profile


def check_within_bound(x: np.ndarray, y: np.ndarray, profile: str, params: bytes) -> None:
    dtype = DType.from_numpy(x.dtype)
    assert y.dtype == x.dtype and y.shape == x.shape
    x64 = x.astype(np.float64)
    y64 = y.astype(np.float64)
    if profile in ("fp16", "bf16"):
        rel, absolute = (2.0**-11, 2.0**-25) if profile == "fp16" else (2.0**-8, 2.0**-134)
        nan = np.isnan(x64)
        assert np.array_equal(np.isnan(y64), nan)
        inf = np.isinf(x64)
        assert np.array_equal(y64[inf], x64[inf])
        finite = ~nan & ~inf
        err = np.abs(x64[finite] - y64[finite])
        assert np.all(err <= np.maximum(rel * np.abs(x64[finite]), absolute)), (x, y)
    else:
        scale, _ = struct.unpack(">db", params)
        bound = scale * (0.5 + 2.0**-40) + UNIT_ROUNDOFF[dtype] * np.abs(y64)
        assert np.all(np.abs(x64 - y64) <= bound), (x, y, scale)


def bits(arr: np.ndarray) -> bytes:
    return np.ascontiguousarray(arr).tobytes()


ROUND_TRIP_ARGS = dict(
    tensors=st.lists(tensor_and_profile(), min_size=1, max_size=3), inferences=st.integers(1, 2),
    cuts=st.lists(st.integers(0, 10_000), max_size=6), aips_id=st.integers(0, 65535),
    partition_id=st.integers(0, 65535))


@SETTINGS
@given(**ROUND_TRIP_ARGS)
def test_round_trip(tensors: list[tuple[np.ndarray, str]], inferences: int, cuts: list[int], aips_id: int,
                    partition_id: int) -> None:
    check_round_trip(tensors, inferences, cuts, aips_id, partition_id)


@pytest.mark.slow
@settings(SETTINGS, max_examples=5000)
@given(**ROUND_TRIP_ARGS)
def test_round_trip_many(tensors: list[tuple[np.ndarray, str]], inferences: int, cuts: list[int], aips_id: int,
                         partition_id: int) -> None:
    check_round_trip(tensors, inferences, cuts, aips_id, partition_id)


def check_round_trip(tensors: list[tuple[np.ndarray, str]], inferences: int, cuts: list[int], aips_id: int,
                     partition_id: int) -> None:
    arrays = [t for t, _ in tensors]
    aips = Aips.for_arrays(aips_id, partition_id, arrays, profile=[p for _, p in tensors])
    units = [encode_aips(aips)] + [b"".join(encode_data(aips, arrays)) for _ in range(inferences)]
    stream = b"".join(units)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    events = decode_all(stream[a:b] for a, b in zip(points, points[1:], strict=False))

    assert isinstance(events[0], AipsActivated) and events[0].aips == aips
    assert len(events) == 1 + inferences
    offset = len(units[0])
    for unit, event in zip(units[1:], events[1:], strict=True):
        assert isinstance(event, TensorsDecoded)
        assert (event.aips_id, event.partition_id, event.unit_size, event.stream_offset) == \
            (aips_id, partition_id, len(unit), offset)
        offset += len(unit)
        table = parse_data_table(unit[5:])
        assert event.decoded_sizes == tuple(a.nbytes for a in arrays)
        for (x, profile), y, entry in zip(tensors, event.tensors, table.entries, strict=True):
            assert not y.flags.writeable
            if get_profile(profile).lossless:
                assert y.dtype == x.dtype and y.shape == x.shape and bits(y) == bits(x)
            else:
                check_within_bound(x, y, profile, entry.params)


@given(x=hnp.arrays(np.float32, shapes, elements=st.floats(-1e6, 1e6, width=32)))
@SETTINGS
def test_int8_error_is_at_most_half_a_step(x: np.ndarray) -> None:
    """The int8 bound is tight: scale/2 (plus float32 rounding), and 0.0 is always exact."""
    aips = Aips.for_arrays(1, 1, [x], profile="int8")
    events = decode_all([encode_aips(aips), *encode_data(aips, [x])])
    y = events[1].tensors[0]
    table = parse_data_table(b"".join(encode_data(aips, [x]))[5:])
    scale, zero_point = struct.unpack(">db", table.entries[0].params)
    assert -128 <= zero_point <= 127
    span = max(float(x.max()), 0.0) - min(float(x.min()), 0.0)
    assert scale == (span / 255 if span else 1.0)
    assert np.all(np.abs(x.astype(np.float64) - y) <= scale * (0.5 + 2**-40) + 2.0**-24 * np.abs(y))
    assert np.all(y[x == 0] == 0)


@pytest.mark.parametrize(("profile", "value"), [("fp16", 65520.0), ("fp16", -1e6), ("bf16", 3.4e38)])
def test_lossy_overflow_is_refused_not_clipped(profile: str, value: float) -> None:
    x = np.array([1.0, value], np.float32)
    aips = Aips.for_arrays(1, 1, [x], profile=profile)
    with pytest.raises(FormatError) as info:
        encode_data(aips, [x])
    assert info.value.code is ErrorCode.VALUE_OUT_OF_RANGE
    assert f"{abs(value):g}" in info.value.message


def test_fp16_keeps_the_largest_finite_values_and_specials() -> None:
    x = np.array([65519.0, -65504.0, np.inf, -np.inf, np.nan, 2.0**-25, 0.0, -0.0], np.float32)
    aips = Aips.for_arrays(1, 1, [x], profile="fp16")
    y = decode_all([encode_aips(aips), *encode_data(aips, [x])])[1].tensors[0]
    assert y[0] == 65504.0 and y[1] == -65504.0 and y[2] == np.inf and y[3] == -np.inf and np.isnan(y[4])
    assert bits(y[6:]) == bits(x[6:])  # signed zeros survive


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_int8_refuses_non_finite(bad: float) -> None:
    x = np.array([1.0, bad], np.float32)
    with pytest.raises(FormatError) as info:
        encode_data(Aips.for_arrays(1, 1, [x], profile="int8"), [x])
    assert info.value.code is ErrorCode.VALUE_OUT_OF_RANGE


def test_int8_saturating_float16_range_stays_finite() -> None:
    """Rounding at the ends of the range may step past float16's largest value: the decoder clamps."""
    x = np.array([-65504.0, 65504.0, 0.0], np.float16)
    aips = Aips.for_arrays(1, 1, [x], profile="int8")
    y = decode_all([encode_aips(aips), *encode_data(aips, [x])])[1].tensors[0]
    assert np.all(np.isfinite(y))
    span = 2 * 65504.0
    assert np.all(np.abs(x.astype(np.float64) - y) <= span / 255 / 2 * (1 + 2**-40) + 2**-11 * np.abs(y))


def test_raw_encode_is_zero_copy_and_decode_is_aligned_view() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    aips = Aips.for_arrays(1, 1, [x, x[0]])
    pieces = encode_data(aips, [x, np.ascontiguousarray(x[0])])
    assert isinstance(pieces[1], memoryview)
    assert np.shares_memory(np.frombuffer(pieces[1], np.float32), x)
    events = decode_all([encode_aips(aips), *pieces])
    first, second = events[1].tensors
    assert first.flags.aligned and second.flags.aligned
    # Both arrays are views of the one buffer the decoder assembled the unit in.
    assert first.base is not None and np.shares_memory(first, np.frombuffer(first.base, np.uint8))
    assert math.prod(first.shape) == 24 and bits(first) == bits(x)


def test_non_contiguous_and_big_endian_inputs_are_converted() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    view = x.T  # not C-contiguous
    swapped = x.astype(">f4")
    aips = Aips.for_arrays(1, 1, [view, swapped])
    events = decode_all([encode_aips(aips), *encode_data(aips, [view, swapped])])
    assert np.array_equal(events[1].tensors[0], view) and np.array_equal(events[1].tensors[1], x)


@pytest.mark.parametrize("profile", ["fp16", "bf16"])
def test_overflow_threshold_is_where_the_cast_reaches_infinity(profile: str) -> None:
    """The refusal threshold is exactly the smallest float32 the cast rounds to infinity."""
    transform = get_profile(profile).transform
    at = np.float32(transform.overflow_at)  # type: ignore[attr-defined]
    below = np.nextafter(at, np.float32(0))
    with np.errstate(over="ignore"):
        assert np.isinf(np.array([at]).astype(transform.target))[0]  # type: ignore[attr-defined]
        assert np.isfinite(np.array([below]).astype(transform.target))[0]  # type: ignore[attr-defined]
    x = np.array([below, -below], np.float32)
    aips = Aips.for_arrays(1, 1, [x], profile=profile)
    y = decode_all([encode_aips(aips), *encode_data(aips, [x])])[1].tensors[0]
    assert np.all(np.isfinite(y))
    with pytest.raises(FormatError):
        encode_data(aips, [np.array([below, -at], np.float32)])
