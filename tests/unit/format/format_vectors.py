"""Shared helpers of the format tests: load fixtures/format vectors, run the decoder, describe events as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from splitbed.format import (
    Aips,
    AipsActivated,
    AipsEnded,
    Decoder,
    DType,
    Event,
    FormatErrorEvent,
    TensorsDecoded,
    TensorSpec,
    UnknownUnit,
    encode_aips,
    encode_data,
    get_profile,
)
from splitbed.format.events import Sentinel

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "format"
GOLDEN = FIXTURES / "golden"
HOSTILE = FIXTURES / "hostile"


def vector_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.bin"))


def load(folder: Path, name: str) -> tuple[bytes, dict[str, Any]]:
    return (folder / f"{name}.bin").read_bytes(), json.loads((folder / f"{name}.json").read_text())


def array_from_json(doc: dict[str, Any]) -> np.ndarray:
    dtype = DType[doc["dtype"].upper()].numpy
    return np.frombuffer(bytes.fromhex(doc["hex"]), dtype=dtype).reshape(doc["shape"])


def aips_from_json(doc: dict[str, Any]) -> Aips:
    return Aips(doc["aips_id"], doc["partition_id"], tuple(
        TensorSpec(t["tensor_id"], DType[t["dtype"].upper()], tuple(t["shape"]),
                   get_profile(t["profile"]).profile_id) for t in doc["tensors"]))


def aips_to_json(aips: Aips) -> dict[str, Any]:
    return {"aips_id": aips.aips_id, "partition_id": aips.partition_id, "tensors": [
        {"tensor_id": t.tensor_id, "dtype": t.dtype.name.lower(), "shape": list(t.shape),
         "profile": get_profile(t.compression_profile_id).name} for t in aips.tensors]}


def tensor_to_json(arr: np.ndarray) -> dict[str, Any]:
    return {"dtype": DType.from_numpy(arr.dtype).name.lower(), "shape": list(arr.shape),
            "hex": np.ascontiguousarray(arr).tobytes().hex()}


def event_to_json(event: Event) -> dict[str, Any]:
    """The fields a vector's JSON pins (messages are free text and only checked to be non-empty)."""
    if isinstance(event, AipsActivated):
        return {"event": "AipsActivated", "aips": aips_to_json(event.aips), "unit_size": event.unit_size,
                "stream_offset": event.stream_offset}
    if isinstance(event, AipsEnded):
        assert event.detail
        return {"event": "AipsEnded", "aips_id": event.aips_id, "reason": event.reason.value}
    if isinstance(event, TensorsDecoded):
        return {"event": "TensorsDecoded", "aips_id": event.aips_id, "partition_id": event.partition_id,
                "tensor_ids": list(event.tensor_ids), "tensors": [tensor_to_json(t) for t in event.tensors],
                "unit_size": event.unit_size, "payload_sizes": list(event.payload_sizes),
                "decoded_sizes": list(event.decoded_sizes), "stream_offset": event.stream_offset}
    if isinstance(event, UnknownUnit):
        return {"event": "UnknownUnit", "unit_type": event.unit_type, "length": event.length,
                "stream_offset": event.stream_offset}
    assert isinstance(event, FormatErrorEvent)
    assert event.message
    return {"event": "FormatErrorEvent", "code": event.code.value, "recoverable": event.recoverable,
            "unit_type": event.unit_type, "stream_offset": event.stream_offset}


def decode_all(chunks: Iterable[bytes | memoryview], decoder: Decoder | None = None,
               end: bool = True) -> list[Event]:
    """Feed every chunk (draining events after each), then end the stream; every event, in order."""
    decoder = decoder or Decoder()
    events: list[Event] = []
    for chunk in chunks:
        decoder.feed(chunk)
        events.extend(decoder.events())
        if events and isinstance(events[-1], FormatErrorEvent) and not events[-1].recoverable:
            return events
    if end:
        decoder.end_of_stream()
        events.extend(decoder.events())
        if not (events and isinstance(events[-1], FormatErrorEvent) and not events[-1].recoverable):
            assert isinstance(decoder.next_event(), Sentinel)
    return events


def encode_steps(steps: list[dict[str, Any]]) -> bytes:
    """The stream the encoder produces for a vector's steps (hand-made raw units are copied as they are)."""
    out = bytearray()
    aips: Aips | None = None
    for step in steps:
        if "aips" in step:
            aips = aips_from_json(step["aips"])
            out += encode_aips(aips)
        elif "data" in step:
            assert aips is not None
            for piece in encode_data(aips, [array_from_json(a) for a in step["data"]]):
                out += piece
        else:
            out += bytes.fromhex(step["raw"])
    return bytes(out)
