"""The JSON baseline (the testbed contribution's json.dumps of .tolist()): round trip, and capped, checked decoding."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from splitbed.format import DType, ErrorCode, FormatError, json_baseline


def test_round_trip_every_dtype_and_extra_fields() -> None:
    arrays = [np.array([[1.5, -2.25]], np.float32), np.array(65504, np.float16),
              np.array([3.0, -0.5], ml_dtypes.bfloat16), np.array([np.pi], np.float64),
              np.array([-128, 127], np.int8), np.array([255], np.uint8), np.array([-3], np.int16),
              np.array([65535], np.uint16), np.array([-(2**31)], np.int32), np.array([2**32 - 1], np.uint32),
              np.array([-(2**63)], np.int64), np.array([2**64 - 1], np.uint64), np.array([True, False])]
    assert {DType.from_numpy(a.dtype) for a in arrays} == set(DType)
    data = json_baseline.encode(arrays, remote_model_inference_time=0.25, server_physical_gpus=[])
    decoded, extra = json_baseline.decode(data)
    assert extra == {"remote_model_inference_time": 0.25, "server_physical_gpus": []}
    for a, b in zip(arrays, decoded, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_looks_like_the_testbed_contributions_json() -> None:
    x = np.array([[0.1, 2.0]], np.float32)
    doc = json.loads(json_baseline.encode([x], preds_time=1))
    assert doc["tensors"] == [x.tolist()] and doc["preds_time"] == 1


def test_decimal_text_takes_about_three_times_the_binary_size() -> None:
    """float32 activations printed as decimal text take ~3x their binary size (ReLU outputs: zeros are short)."""
    x = np.maximum(np.random.default_rng(1).standard_normal((1, 28, 28, 256), np.float32), 0)
    ratio = len(json_baseline.encode([x])) / x.nbytes
    assert 1.5 < ratio < 5, ratio


@pytest.mark.parametrize(("data", "code"), [
    (b"[" * 100_000 + b"]" * 100_000, ErrorCode.JSON_INVALID),
    (b"{not json", ErrorCode.JSON_INVALID),
    (b'{"tensors": [[1, 2], [3]], "dtypes": ["float32"]}', ErrorCode.JSON_INVALID),
    (b'{"tensors": [[[1, 2], [3]]], "dtypes": ["float32"]}', ErrorCode.JSON_INVALID),
    (b'{"tensors": [["a"]], "dtypes": ["int32"]}', ErrorCode.JSON_INVALID),
    (b'{"tensors": [[null]], "dtypes": ["float32"]}', ErrorCode.JSON_INVALID),
    (b'{"tensors": [[300]], "dtypes": ["int8"]}', ErrorCode.JSON_INVALID),
    (b'{"tensors": [[1e300]], "dtypes": ["float32"]}', ErrorCode.JSON_INVALID),
    (b'{"tensors": [[1]], "dtypes": ["complex64"]}', ErrorCode.JSON_INVALID),
    (b'{"tensors": [[1]], "dtypes": []}', ErrorCode.JSON_INVALID),
    (b"[1, 2]", ErrorCode.JSON_INVALID),
])
def test_bad_input_gets_a_specific_error(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(FormatError) as info:
        json_baseline.decode(data)
    assert info.value.code is code


def test_size_is_capped_before_parsing() -> None:
    with pytest.raises(FormatError) as info:
        json_baseline.decode(b" " * 101, max_size=100)
    assert info.value.code is ErrorCode.JSON_TOO_LARGE


def test_reserved_field_names() -> None:
    with pytest.raises(FormatError):
        json_baseline.encode([np.zeros(1)], tensors=1)
