"""The JPEG compression profiles (jpeg-q75, jpeg-q90): the full offload of a camera image in the format.

Round trips stay within the documented bound (PSNR, docs/FORMAT.md section 7); a receiver checks the JPEG's own
header against the AIPS shape before it decodes a pixel, so a JPEG that lies about its size (a decompression
bomb) is refused, as are truncated JPEGs, bytes after the image and non-RGB JPEGs."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import skimage.data
from PIL import Image

from splitbed.format import Aips, Decoder, ErrorCode, FormatError, encode_aips, encode_data_bytes, get_profile
from splitbed.format.coders import JPEG_DECODE_FACTOR, JPEG_MAX_SIDE
from splitbed.format.data_unit import parse_data_table
from splitbed.format.events import FormatErrorEvent, TensorsDecoded
from splitbed.format.memory import decode_bytes

PSNR_BOUND_DB = 30.0  # the profiles' documented bound on the built-in photos at 224x224 (profiles.JPEG_BOUND)
BUILTIN = ("chelsea", "astronaut", "coffee", "rocket")  # splitbed.nodes.images.BUILTIN_IMAGES


def _image(name: str, size: tuple[int, int]) -> np.ndarray:
    """A built-in photo at `size` (width, height), as a (1, H, W, 3) uint8 batch."""
    return np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize(size))[None]


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _decode(stream: bytes) -> list[object]:
    decoder = Decoder()
    decoder.feed(stream)
    return list(decoder.events())


@pytest.mark.parametrize("profile", ["jpeg-q75", "jpeg-q90"])
@pytest.mark.parametrize(("name", "size"), [*((n, (224, 224)) for n in BUILTIN), ("astronaut", (75, 50)),
                                            ("coffee", (1, 1))])
def test_round_trip_is_within_the_documented_psnr(profile: str, name: str, size: tuple[int, int]) -> None:
    image = _image(name, size)
    aips = Aips.for_arrays(1, 255, [image], profile)
    data = encode_data_bytes(aips, [image])
    events = _decode(encode_aips(aips) + data)
    decoded = events[-1]
    assert isinstance(decoded, TensorsDecoded), events
    [y] = decoded.tensors
    assert y.dtype == np.uint8 and y.shape == image.shape and not y.flags.writeable
    # the bound is stated for 224x224; a 75x50 thumbnail of a detailed photo is harder (27 dB at q75 here)
    assert _psnr(image, y) >= (PSNR_BOUND_DB if size == (224, 224) else 25.0)
    assert not get_profile(profile).lossless
    payload = parse_data_table(data[5:]).entries[0].payload_length
    assert payload < image.nbytes or size == (1, 1)  # a JPEG's ~600 bytes of headers outweigh one pixel
    assert data[5 + parse_data_table(data[5:]).entries[0].payload_offset:][:2] == b"\xff\xd8"


def test_higher_quality_costs_bytes_and_buys_fidelity() -> None:
    image = _image("chelsea", (224, 224))
    sizes, psnrs = {}, {}
    for profile in ("jpeg-q75", "jpeg-q90"):
        aips = Aips.for_arrays(1, 255, [image], profile)
        data = encode_data_bytes(aips, [image])
        sizes[profile] = len(data)
        psnrs[profile] = _psnr(image, _decode(encode_aips(aips) + data)[-1].tensors[0])  # type: ignore[attr-defined]
    assert sizes["jpeg-q75"] < sizes["jpeg-q90"] < image.nbytes // 5
    assert psnrs["jpeg-q75"] < psnrs["jpeg-q90"]


@pytest.mark.parametrize(("dtype", "shape", "why"), [
    (np.uint8, (1, 8, 8, 4), "RGB image"), (np.uint8, (8, 8), "RGB image"), (np.uint8, (2, 8, 8, 3), "RGB image"),
    (np.float32, (1, 8, 8, 3), "does not apply to float32"), (np.uint8, (1, JPEG_MAX_SIDE + 1, 1, 3), "a side")])
def test_only_rgb_uint8_images_within_jpegs_limits_take_the_profile(dtype: type, shape: tuple[int, ...],
                                                                   why: str) -> None:
    with pytest.raises(FormatError, match=why) as caught:
        Aips.for_arrays(1, 255, [np.zeros(shape, dtype)], "jpeg-q90")
    assert caught.value.code == ErrorCode.PROFILE_NOT_APPLICABLE


def test_the_decode_budget_covers_a_jpeg_at_the_aips_size() -> None:
    aips = Aips.for_arrays(1, 255, [np.zeros((1, 224, 224, 3), np.uint8)], "jpeg-q90")
    assert decode_bytes(aips) >= JPEG_DECODE_FACTOR * 224 * 224 * 3


def _data_unit_with(aips: Aips, payload: bytes) -> bytes:
    """A data unit of `aips` carrying `payload` as its one tensor's JPEG: the real encoder's unit, payload swapped
    (the table's payload_length and the TLV length patched)."""
    image = np.zeros(aips.tensors[0].shape, np.uint8)
    good = encode_data_bytes(aips, [image])
    entry = parse_data_table(good[5:]).entries[0]
    table = bytearray(good[5:5 + entry.payload_offset])
    old = struct.pack(">I", entry.payload_length)
    at = table.rfind(old)
    table[at:at + 4] = struct.pack(">I", len(payload))
    value = bytes(table) + payload
    assert parse_data_table(value).entries[0].payload_length == len(payload)
    return good[:1] + struct.pack(">I", len(value)) + value


def _jpeg(image: np.ndarray, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=90, **options)
    return out.getvalue()


def _refused(aips: Aips, payload: bytes) -> FormatErrorEvent:
    events = _decode(encode_aips(aips) + _data_unit_with(aips, payload))
    [error] = [e for e in events if isinstance(e, FormatErrorEvent)]
    assert error.code == ErrorCode.DECOMPRESSION_FAILED and error.recoverable
    assert not [e for e in events if isinstance(e, TensorsDecoded)]
    return error


def test_a_jpeg_whose_header_lies_about_its_size_is_refused_before_decoding() -> None:
    aips = Aips.for_arrays(1, 255, [np.zeros((1, 16, 16, 3), np.uint8)], "jpeg-q90")
    small = _jpeg(np.full((16, 16, 3), 128, np.uint8))
    sof = small.index(b"\xff\xc0")  # baseline frame header: FF C0, length u16, precision u8, height u16, width u16
    for height, width in ((60_000, 60_000), (16, 17), (8, 16)):
        bomb = bytearray(small)
        struct.pack_into(">HH", bomb, sof + 5, height, width)
        error = _refused(aips, bytes(bomb))
        assert f"JPEG header says {width}x{height}" in error.message and "AIPS shape says 16x16" in error.message
    # a genuinely bigger image, honestly labelled, is refused the same way: the AIPS fixes the size
    error = _refused(aips, _jpeg(np.zeros((2000, 2000, 3), np.uint8)))
    assert "JPEG header says 2000x2000" in error.message


def test_truncated_jpegs_trailing_bytes_and_non_rgb_jpegs_are_refused() -> None:
    image = _image("chelsea", (32, 32))[0]
    aips = Aips.for_arrays(1, 255, [image[None]], "jpeg-q90")
    whole = _jpeg(image)
    for cut in (len(whole) - 1, len(whole) // 2, 3, 0):
        assert "not one whole JPEG" in _refused(aips, whole[:cut]).message
    assert "not one whole JPEG" in _refused(aips, whole + b"\0").message
    # a truncated scan closed with an EOI marker: Pillow refuses the missing data
    cut_scan = whole[:len(whole) // 2] + b"\xff\xd9"
    assert "does not decode" in _refused(aips, cut_scan).message
    grey = _jpeg(np.asarray(Image.fromarray(image).convert("L")))
    assert "1 colour component(s)" in _refused(aips, grey).message
    assert "no readable frame header" in _refused(aips, b"\xff\xd8" + b"\x00" * 64 + b"\xff\xd9").message
    cmyk = _jpeg(image)  # a 4-component frame header where the AIPS says RGB
    sof = cmyk.index(b"\xff\xc0")
    assert "4 colour component(s)" in _refused(aips, cmyk[:sof + 9] + b"\x04" + cmyk[sof + 10:]).message


def test_the_decoder_goes_on_after_a_refused_jpeg() -> None:
    image = _image("rocket", (40, 24))
    aips = Aips.for_arrays(1, 255, [image], "jpeg-q75")
    stream = encode_aips(aips) + _data_unit_with(aips, b"\xff\xd8\xff\xd9") + encode_data_bytes(aips, [image])
    events = _decode(stream)
    assert [type(e).__name__ for e in events] == ["AipsActivated", "FormatErrorEvent", "TensorsDecoded"]
