"""Golden vectors and hostile corpus (fixtures/format): the committed bytes are checked both ways.

Decoder: the committed .bin decodes to exactly the events in the .json. Encoder: building the vector's steps
with splitbed.format reproduces the committed .bin byte for byte (the files were written by an independent
reference writer, fixtures/format/make_golden.py).
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from format_vectors import GOLDEN, HOSTILE, decode_all, encode_steps, event_to_json, load, vector_names

from splitbed.format import FormatErrorEvent

GOLDEN_NAMES = vector_names(GOLDEN)
HOSTILE_NAMES = vector_names(HOSTILE)


def test_corpus_is_complete() -> None:
    """Every profile and unit kind has a golden vector; the hostile kinds the issue names are present."""
    assert {f"profile_{p}" for p in ("none", "fp16", "bf16", "int8", "zstd", "lz4", "shuffle_zstd",
                                     "int8_zstd")} <= set(GOLDEN_NAMES)
    assert {"single_raw", "multi_tensor", "all_dtypes", "unknown_type", "lifetime"} <= set(GOLDEN_NAMES)
    assert {"oversize_length", "rank_255", "dimension_overflow", "truncated", "unknown_dtype",
            "zstd_bomb_declared", "zstd_bomb_undeclared", "lz4_bomb", "shape_mismatch",
            "tensor_count_mismatch", "aips_id_mismatch", "data_without_aips"} <= set(HOSTILE_NAMES)


@pytest.mark.parametrize("name", GOLDEN_NAMES + HOSTILE_NAMES)
def test_decoder_reports_the_pinned_events(name: str) -> None:
    folder = GOLDEN if name in GOLDEN_NAMES else HOSTILE
    data, doc = load(folder, name)
    assert [event_to_json(e) for e in decode_all([data])] == doc["events"]


@pytest.mark.parametrize("name", GOLDEN_NAMES + HOSTILE_NAMES)
def test_encoder_reproduces_the_committed_bytes(name: str) -> None:
    folder = GOLDEN if name in GOLDEN_NAMES else HOSTILE
    data, doc = load(folder, name)
    assert encode_steps(doc["steps"]) == data


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_decodes_the_same_fed_byte_by_byte(name: str) -> None:
    data, doc = load(GOLDEN, name)
    assert [event_to_json(e) for e in decode_all(data[i:i + 1] for i in range(len(data)))] == doc["events"]


def _unit_ends(data: bytes) -> list[int]:
    ends, pos = [], 0
    while pos < len(data):
        pos += 5 + struct.unpack_from(">I", data, pos + 1)[0]
        ends.append(pos)
    assert pos == len(data)
    return ends


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_truncation_at_every_offset(name: str) -> None:
    """Cut anywhere: every complete unit is still reported, then exactly one fatal `truncated` error."""
    data, doc = load(GOLDEN, name)
    ends = _unit_ends(data)
    full = [event_to_json(e) for e in decode_all([data])]
    for cut in range(len(data)):
        complete = max([e for e in ends if e <= cut], default=0)
        expected = [event_to_json(e) for e in decode_all([data[:complete]])]
        got = [event_to_json(e) for e in decode_all([data[:cut]])]
        if cut == complete:
            assert got == expected
        else:
            assert got[:-1] == expected, cut
            assert got[-1] == {"event": "FormatErrorEvent", "code": "truncated", "recoverable": False,
                               "unit_type": got[-1]["unit_type"], "stream_offset": complete}, cut
        assert expected == full[:len(expected)]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_input_is_decoded_in_bounded_memory(name: str) -> None:
    """No hostile vector makes the decoder allocate more than a small multiple of its own size (the bombs
    would need 64 MiB, the oversize headers 4 GiB)."""
    data, _ = load(HOSTILE, name)
    tracemalloc.start()
    try:
        events = decode_all([data])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any(isinstance(e, FormatErrorEvent) for e in events)
    assert peak < 64 * 1024 + 4 * len(data), f"{name}: peak {peak} bytes"
