"""The golden camera vector (fixtures/format/camera/jpeg_q90.bin): a camera frame's full offload, the `camera`
pseudo-partition (id 255) with profile jpeg-q90, as AIPS + one data unit, written by fixtures/format/make_golden.py
with its own struct writer around a JPEG it made with Pillow at the documented settings (docs/FORMAT.md 7.2, 13).

A JPEG's bytes are libjpeg's: another libjpeg(-turbo) release MAY code the same pixels into other bytes and decode
them to slightly other pixels. So the framing (AIPS and data unit around the payload) and the JPEG's coding
parameters (quantisation tables, frame header, Huffman tables) are checked byte for byte everywhere, the decoded
pixels against the pinned ones within a bound, and the whole stream byte for byte (encoder and decoder) where the
library is the one that wrote the file (the JSON names it)."""

from __future__ import annotations

import io
import struct

import numpy as np
import PIL.features
import pytest
from format_vectors import (
    FIXTURES,
    aips_from_json,
    array_from_json,
    decode_all,
    encode_steps,
    event_to_json,
    load,
)
from PIL import Image

from splitbed.format import Aips, TensorsDecoded, encode_aips, encode_data_bytes
from splitbed.format.coders import jpeg_frame_size

CAMERA = FIXTURES / "camera"
DATA, DOC = load(CAMERA, "jpeg_q90")
SAME_LIBRARY = PIL.features.version("libjpeg_turbo") == DOC["jpeg"]["libjpeg_turbo"]
# docs/FORMAT.md section 11 style: the AIPS of the camera frame, field by field
AIPS_HEX = ("01 0000001c"  # TLV type 1 (AIPS), value length 28
            " 01 0001 00ff 0001"  # format_version 1, ai_parameter_set_id 1, partition_id 255 (camera), 1 tensor
            " 0000 06 04 00000001 00000018 00000020 00000003"  # tensor 0, uint8, rank 4: [1, 24, 32, 3]
            " 09")  # compression_profile_id 9 (jpeg-q90)


def _image() -> np.ndarray:
    return array_from_json(DOC["steps"][1]["data"][0])


def _data_unit(payload: bytes) -> bytes:
    """The intermediate data unit around one JPEG payload of the [1, 24, 32, 3] frame, per docs/FORMAT.md 8."""
    table = struct.pack(">HH", 1, 1) + struct.pack(">HBBII", 0, 9, 0, 24 * 32 * 3, len(payload))
    assert len(table) == 16  # a multiple of 8: no padding before the payload
    return struct.pack(">BI", 2, len(table) + len(payload)) + table + payload


def _segments(jpeg: bytes) -> dict[int, list[bytes]]:
    """The marker segments before the scan (ITU-T T.81 B.1.1.4): marker -> [segment bytes, marker included]."""
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    found: dict[int, list[bytes]] = {}
    pos = 2
    while jpeg[pos] == 0xFF and jpeg[pos + 1] != 0xDA:  # up to start of scan
        length = struct.unpack_from(">H", jpeg, pos + 2)[0]
        found.setdefault(jpeg[pos + 1], []).append(jpeg[pos:pos + 2 + length])
        pos += 2 + length
    assert jpeg[pos:pos + 2] == b"\xff\xda"
    return found


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_the_golden_stream_is_an_aips_and_a_data_unit_framed_byte_for_byte() -> None:
    aips_unit = bytes.fromhex(AIPS_HEX)
    assert DATA[:len(aips_unit)] == aips_unit == encode_aips(aips_from_json(DOC["steps"][0]["aips"]))
    payload = DATA[len(aips_unit) + 5 + 16:]
    assert DATA[len(aips_unit):] == _data_unit(payload)  # whatever bytes libjpeg chose, the framing is exact
    assert len(payload) == DOC["jpeg"]["payload_bytes"] and len(DATA) == len(aips_unit) + 21 + len(payload)
    assert jpeg_frame_size(memoryview(payload)) == (24, 32, 3)


def test_the_golden_stream_decodes_to_the_pinned_frame() -> None:
    events = [event_to_json(e) for e in decode_all([DATA])]
    pinned = DOC["events"]
    assert events[0] == pinned[0]  # AipsActivated: partition 255, uint8 [1, 24, 32, 3], jpeg-q90, 33 bytes
    shown = {k: v for k, v in events[1].items() if k != "tensors"}
    assert shown == {k: v for k, v in pinned[1].items() if k != "tensors"}
    assert shown["partition_id"] == 255 and shown["decoded_sizes"] == [24 * 32 * 3]
    [decoded] = [e for e in decode_all([DATA]) if isinstance(e, TensorsDecoded)][0].tensors
    assert decoded.dtype == np.uint8 and decoded.shape == (1, 24, 32, 3)
    payload = DATA[33 + 21:]
    assert np.array_equal(decoded[0], np.asarray(Image.open(io.BytesIO(payload)).convert("RGB")))
    expected = array_from_json(pinned[1]["tensors"][0])
    if SAME_LIBRARY:
        assert np.array_equal(decoded, expected)
    else:  # another libjpeg's IDCT and upsampling: the same picture within rounding
        assert _psnr(decoded, expected) >= 40.0
    assert _psnr(_image(), decoded) >= 35.0  # 39.1 dB when the file was written: jpeg-q90 of a real photo crop
    assert [event_to_json(e) for e in decode_all(DATA[i:i + 1] for i in range(len(DATA)))] == events


def test_the_encoder_codes_the_frame_with_the_golden_parameters() -> None:
    """Quality 90 tables, 4:2:0 baseline frame header and the standard Huffman tables are the profile's, not the
    library's: they match byte for byte whatever libjpeg release codes the scan."""
    image = _image()
    aips = Aips.for_arrays(1, 255, [image], "jpeg-q90")
    assert encode_aips(aips) == bytes.fromhex(AIPS_HEX)
    unit = encode_data_bytes(aips, [image])
    ours, golden = unit[21:], DATA[33 + 21:]
    assert unit == _data_unit(ours)
    mine, theirs = _segments(ours), _segments(golden)
    for marker in (0xDB, 0xC0, 0xC4):  # DQT, SOF0 (baseline), DHT
        assert mine.get(marker) == theirs.get(marker) and theirs.get(marker), hex(marker)
    assert 0xC2 not in mine  # not progressive
    sof = theirs[0xC0][0]
    assert sof[4:10] == struct.pack(">BHHB", 8, 24, 32, 3)  # 8-bit samples, 24 lines, 32 columns, 3 components
    assert sof[10:] == bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])  # Y 2x2, Cb and Cr 1x1: 4:2:0


@pytest.mark.skipif(not SAME_LIBRARY, reason=f"the golden JPEG was coded by libjpeg-turbo "
                    f"{DOC['jpeg']['libjpeg_turbo']}, Pillow here has {PIL.features.version('libjpeg_turbo')}: the "
                    "framing and coding parameters are checked above, the scan's bytes are that library's")
def test_the_encoder_reproduces_the_golden_stream_byte_for_byte() -> None:
    assert encode_steps(DOC["steps"]) == DATA
