"""The nodes' adapter over splitbed.format, with the real decoder: a whole session's uplink (control units
included) decodes with the format decoder alone, and the remote's FormatSession reports lifecycle and errors."""

from __future__ import annotations

import numpy as np
import pytest

from splitbed.format import AipsActivated, Decoder, TensorsDecoded, UnknownUnit
from splitbed.nodes import formatio
from splitbed.nodes import protocol as proto
from splitbed.nodes.errors import ConfigurationError, ProtocolError
from splitbed.nodes.protocol import MsgType


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((1, 7, 7, 8)).astype(np.float32), rng.standard_normal((1, 7, 7, 4)).astype(np.float32)]


def test_session_uplink_decodes_with_the_format_decoder_alone() -> None:
    arrays = _arrays()
    aips = formatio.build_aips(1, 12, arrays, formatio.profile_id("zstd")[0])
    pieces = formatio.data_unit(aips, arrays)
    sizes = formatio.payload_sizes(pieces)
    assert len(sizes) == 2 and all(0 < size <= a.nbytes + 64 for size, a in zip(sizes, arrays, strict=True))
    stream = b"".join([
        proto.encode_control(MsgType.HELLO, {"protocol_version": 1}),
        proto.encode_control(MsgType.CLOCK_PING, {"t1": 5}),
        proto.encode_control(MsgType.SELECT, {"model": "m", "encoding": "tlv"}),
        proto.encode_control(MsgType.PREPARE, {"partition_id": 12}),
        formatio.aips_unit(aips), *[bytes(p) for p in pieces],
        proto.encode_control(MsgType.RESET, {}),
        formatio.json_baseline_unit(arrays, 12),
    ])
    decoder = Decoder()
    decoder.feed(stream)
    events = decoder.events()
    assert [e.unit_type for e in events if isinstance(e, UnknownUnit)] == [
        MsgType.HELLO, MsgType.CLOCK_PING, MsgType.SELECT, MsgType.PREPARE, MsgType.RESET, MsgType.JSON_BASELINE]
    (activated,) = [e for e in events if isinstance(e, AipsActivated)]
    (decoded,) = [e for e in events if isinstance(e, TensorsDecoded)]
    assert activated.aips == aips
    assert list(decoded.payload_sizes) == sizes
    for got, want in zip(decoded.tensors, arrays, strict=True):
        np.testing.assert_array_equal(got, want)
    assert [formatio.tensor_crc32(a) for a in decoded.tensors] == [formatio.tensor_crc32(a) for a in arrays]


def test_format_session_lifecycle_and_errors() -> None:
    arrays = _arrays()
    session = formatio.FormatSession(1 << 20)
    aips = formatio.build_aips(3, 2, arrays, 0)
    pieces = formatio.data_unit(aips, arrays)
    assert formatio.payload_sizes(pieces) == [a.nbytes for a in arrays]  # raw profile
    session.feed(formatio.aips_unit(aips))
    outcome = session.drain()
    assert [e["event"] for e in outcome.events] == ["activated"] and outcome.complete is None
    session.feed(b"".join(bytes(p) for p in pieces))
    outcome = session.drain()
    assert outcome.complete is not None and outcome.complete.partition_id == 2 and not outcome.errors
    assert [e["event"] for e in session.reset()] == ["ended"]
    session.feed(b"".join(bytes(p) for p in pieces))  # data with no active AIPS: recoverable error
    outcome = session.drain()
    assert outcome.complete is None
    (error,) = outcome.errors
    assert error.code == "no_active_aips" and not error.fatal
    session.feed(proto.pack_header(2, 2 << 20))  # over the cap: fatal
    outcome = session.drain()
    assert outcome.errors[-1].code == "unit_too_large" and outcome.errors[-1].fatal


def test_json_baseline_round_trip_and_errors() -> None:
    arrays = _arrays()
    unit = formatio.json_baseline_unit(arrays, 7)
    decoded = formatio.decode_json_baseline(unit[proto.HEADER_SIZE:], 1 << 20)
    assert decoded.partition_id == 7
    for got, want in zip(decoded.arrays, arrays, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ProtocolError) as info:
        formatio.decode_json_baseline(unit[proto.HEADER_SIZE:], 100)
    assert info.value.code == "json_too_large" and not info.value.fatal
    with pytest.raises(ProtocolError, match="partition_id"):
        formatio.decode_json_baseline(b'{"tensors": [], "dtypes": []}', 1 << 20)


def test_profiles() -> None:
    offered = formatio.compression_profiles()
    assert {p["name"] for p in offered} >= {"none", "zstd", "lz4", "fp16", "int8"}
    assert formatio.profile_id("zstd") == formatio.profile_id(str(formatio.profile_id("zstd")[0]))
    assert formatio.profile_lossless("none") and not formatio.profile_lossless("int8")
    with pytest.raises(ConfigurationError, match="not defined"):
        formatio.profile_id("gzip")


def test_tensor_crc32_is_about_values_not_memory_layout() -> None:
    import ml_dtypes

    little = np.arange(24, dtype="<f4").reshape(2, 3, 4)
    assert formatio.tensor_crc32(little) == formatio.tensor_crc32(little.astype(">f4"))
    assert formatio.tensor_crc32(little) == formatio.tensor_crc32(np.asfortranarray(little))
    assert formatio.tensor_crc32(little) != formatio.tensor_crc32(little + 1)
    assert formatio.tensor_crc32(little.astype(ml_dtypes.bfloat16)) != formatio.tensor_crc32(little.astype(np.float16))
