"""Byte coders of the compression profiles (lossless: none, zstd, lz4 block; lossy: JPEG of an RGB image), with
bounded decompression.

`decompress(payload, size, shape)` returns exactly `size` bytes or raises FormatError(decompression_failed); it
never allocates more than `decompress_bytes(size)` bytes, whatever the payload claims (no decompression bombs).
The JPEG coder is the one that needs the tensor's shape (the image's height and width): it checks the JPEG's
own header against the AIPS shape before it decodes a pixel.

Thread safety: python-zstandard's compression and decompression contexts must never be used by two threads at
once (a shared one corrupts data and crashes the process), and the remote node decodes one session per thread.
So every thread gets its own contexts (`_zstd_contexts`); the lz4 block functions keep no state between calls.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from typing import IO, Any, cast

import lz4.block
import zstandard

from splitbed.format.errors import ErrorCode, FormatError

Buffer = bytes | bytearray | memoryview

ZSTD_LEVEL = 3


class _ZstdContexts(threading.local):
    """One compressor and one decompressor per thread, made on the thread's first use."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=False)
        self.decompressor = zstandard.ZstdDecompressor()


_zstd_contexts = _ZstdContexts()


@dataclass(frozen=True, slots=True)
class Coder:
    """Base: no coding; the payload is the transformed bytes themselves."""

    name: str = "none"

    @property
    def exact_size(self) -> bool:
        """True when the payload length must equal the transformed length."""
        return True

    @property
    def lossless(self) -> bool:
        return True

    def shape_problem(self, shape: tuple[int, ...]) -> str | None:
        """Why this coder cannot carry a tensor of `shape` (None: it can); the AIPS is then invalid."""
        return None

    def compress(self, data: memoryview, shape: tuple[int, ...] = ()) -> Buffer:
        return data

    def decompress(self, payload: memoryview, size: int, shape: tuple[int, ...] = ()) -> Buffer:
        return payload

    def decompress_bytes(self, size: int) -> int:
        """Most bytes `decompress` allocates at once for a `size`-byte result (memory budgets count it)."""
        return 0


@dataclass(frozen=True, slots=True)
class ZstdCoder(Coder):
    """One zstd frame (RFC 8878) holding the transformed bytes; the frame content size must match."""

    name: str = "zstd"

    @property
    def exact_size(self) -> bool:
        return False

    def compress(self, data: memoryview, shape: tuple[int, ...] = ()) -> Buffer:
        return _zstd_contexts.compressor.compress(data)

    def decompress_bytes(self, size: int) -> int:
        return size

    def decompress(self, payload: memoryview, size: int, shape: tuple[int, ...] = ()) -> Buffer:
        try:
            declared = zstandard.frame_content_size(payload)
        except zstandard.ZstdError as exc:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED, f"zstd frame header unreadable: {exc}") from None
        if declared not in (-1, size):  # -1: size not in the header; output is then capped at `size`
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"zstd frame declares {declared} bytes but the AIPS implies {size}")
        try:
            out = _zstd_contexts.decompressor.decompress(payload, max_output_size=size, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"zstd payload does not decompress to {size} bytes: {exc}") from None
        if len(out) != size:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"zstd payload decompressed to {len(out)} bytes, the AIPS implies {size}")
        return out


@dataclass(frozen=True, slots=True)
class Lz4Coder(Coder):
    """One LZ4 block (no frame, no size prefix); the decompressed size comes from the AIPS."""

    name: str = "lz4"

    @property
    def exact_size(self) -> bool:
        return False

    def compress(self, data: memoryview, shape: tuple[int, ...] = ()) -> Buffer:
        return lz4.block.compress(data, store_size=False)

    def decompress_bytes(self, size: int) -> int:
        return 2 * size  # python-lz4 decompresses into a scratch buffer, then copies it into the bytes returned

    def decompress(self, payload: memoryview, size: int, shape: tuple[int, ...] = ()) -> Buffer:
        try:
            out = lz4.block.decompress(payload, uncompressed_size=size)
        except lz4.block.LZ4BlockError as exc:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"lz4 block does not decompress within {size} bytes: {exc}") from None
        if len(out) != size:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"lz4 block decompressed to {len(out)} bytes, the AIPS implies {size}")
        return out


#: JPEG's frame header holds each side in 16 bits (ITU-T T.81, SOF: Y and X are 16-bit fields).
JPEG_MAX_SIDE = 65535
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
#: Most bytes decoding allocates per byte of the RGB image, an upper bound: Pillow holds an RGB image at 4 bytes a
#: pixel (4/3), libjpeg keeps a progressive JPEG's coefficients for the whole image (2 bytes a sample: 2), and
#: the bytes returned are one more copy (1).
JPEG_DECODE_FACTOR = 5


_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RST0-7, SOI: no length field


class _ViewFile(io.RawIOBase):
    """A read-only file over a memoryview: Pillow reads the JPEG in blocks from it, without a copy of the whole."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view, self._pos = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), len(self._view) - self._pos))
        memoryview(buffer).cast("B")[:count] = self._view[self._pos:self._pos + count]
        self._pos += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def jpeg_frame_size(data: memoryview) -> tuple[int, int, int]:
    """(height, width, components) from a JPEG's frame header (SOFn, ITU-T T.81 B.2.2), read by walking the marker
    segments before it: nothing is decoded, so a receiver learns the image size without trusting a decoder's
    own limits. FormatError(decompression_failed) when there is no frame header before the first scan."""
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4].tobytes(), "big")
        if length < 2 or pos + 2 + length > len(data):
            break
        if marker in _SOF_MARKERS:
            if length < 8:
                break
            height = int.from_bytes(data[pos + 5:pos + 7].tobytes(), "big")
            width = int.from_bytes(data[pos + 7:pos + 9].tobytes(), "big")
            return height, width, data[pos + 9]
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise FormatError(ErrorCode.DECOMPRESSION_FAILED, "JPEG payload has no readable frame header (SOFn) before its "
                      "first scan")


def image_size(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(height, width) of an RGB image tensor shaped (H, W, 3) or (1, H, W, 3); None for any other shape."""
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 3 or shape[2] != 3:
        return None
    return shape[0], shape[1]


@dataclass(frozen=True, slots=True)
class JpegCoder(Coder):
    """A baseline JPEG (ITU-T T.81, JFIF) of a uint8 RGB image tensor: the full offload of a camera image.

    Lossy: the decoded pixels differ from the sent ones (docs/FORMAT.md, section 7.2, gives the bound tested).
    Encoded with Pillow (libjpeg) at `quality` on the IJG scale, 4:2:0 chroma subsampling, baseline (not
    progressive), standard Huffman tables; decoding accepts any JPEG Pillow reads whose header matches the AIPS.
    """

    name: str = "jpeg"
    quality: int = 75

    @property
    def exact_size(self) -> bool:
        return False

    @property
    def lossless(self) -> bool:
        return False

    def shape_problem(self, shape: tuple[int, ...]) -> str | None:
        size = image_size(shape)
        if size is None:
            return f"JPEG carries an RGB image shaped (height, width, 3) or (1, height, width, 3), not {list(shape)}"
        if max(size) > JPEG_MAX_SIDE:
            return f"JPEG images are at most {JPEG_MAX_SIDE} pixels a side, not {size[0]}x{size[1]}"
        return None

    def compress(self, data: memoryview, shape: tuple[int, ...] = ()) -> Buffer:
        from PIL import Image

        problem = self.shape_problem(shape)
        if problem is not None:
            raise FormatError(ErrorCode.PROFILE_NOT_APPLICABLE, problem)
        height, width = image_size(shape) or (0, 0)
        image = Image.frombuffer("RGB", (width, height), bytes(data), "raw", "RGB", 0, 1)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=self.quality, subsampling="4:2:0", optimize=False,
                   progressive=False)
        return out.getvalue()

    def decompress_bytes(self, size: int) -> int:
        return JPEG_DECODE_FACTOR * size

    def decompress(self, payload: memoryview, size: int, shape: tuple[int, ...] = ()) -> Buffer:
        from PIL import Image

        expected = image_size(shape)
        if expected is None or math.prod(shape) != size:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED, f"JPEG payload for a tensor of shape {list(shape)}: "
                              "not an RGB image")
        height, width = expected
        data = payload  # never copied whole: a payload may be as long as the unit cap, the image much smaller
        if len(data) < 4 or data[:2].tobytes() != _SOI or data[-2:].tobytes() != _EOI:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"JPEG payload of {len(data)} bytes is not one whole JPEG (it must start with the SOI "
                              "marker FF D8 and end with the EOI marker FF D9: truncated, or bytes after the image)")
        declared_height, declared_width, components = jpeg_frame_size(data)
        if (declared_width, declared_height) != (width, height):
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"JPEG header says {declared_width}x{declared_height} (width x height), the AIPS shape "
                              f"says {width}x{height}: refused before decoding")
        if components != 3:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"JPEG has {components} colour component(s), the AIPS shape says RGB (3)")
        try:
            with Image.open(cast(IO[bytes], _ViewFile(data)), formats=["JPEG"]) as image:  # reads the header only
                if image.size != (width, height):  # Pillow read another frame header than ours: refuse
                    raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                                      f"JPEG header says {image.size[0]}x{image.size[1]} (width x height), the AIPS "
                                      f"shape says {width}x{height}: refused before decoding")
                if image.mode != "RGB":
                    raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                                      f"JPEG is {image.mode}, the AIPS shape says RGB (3 channels)")
                image.load()
                out = image.tobytes()
        except FormatError:
            raise
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError...
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"JPEG payload does not decode: {type(exc).__name__}: {exc}") from None
        if len(out) != size:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"JPEG decoded to {len(out)} bytes, the AIPS implies {size}")
        return out


NONE = Coder()
ZSTD = ZstdCoder()
LZ4 = Lz4Coder()
JPEG_Q75 = JpegCoder(name="jpeg", quality=75)
JPEG_Q90 = JpegCoder(name="jpeg", quality=90)
