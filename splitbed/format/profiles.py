"""Compression profiles: an id on the wire, a name, an element transform followed by a byte coder.

docs/FORMAT.md, "Compression profiles", has the same table with each profile's error bound (a test checks
that the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass

from splitbed.format import coders, transforms
from splitbed.format.coders import Coder
from splitbed.format.dtypes import DType
from splitbed.format.errors import ErrorCode, FormatError
from splitbed.format.transforms import Transform


@dataclass(frozen=True, slots=True)
class CompressionProfile:
    """How one tensor's payload is produced from its elements, and how far the result may be off."""

    profile_id: int
    name: str
    transform: Transform
    coder: Coder
    error_bound: str

    @property
    def lossless(self) -> bool:
        return self.transform.lossless and self.coder.lossless

    @property
    def param_length(self) -> int:
        """Bytes of per-inference parameters in the tensor entry of every data unit."""
        return self.transform.param_length

    def applies_to(self, dtype: DType) -> bool:
        return dtype in self.transform.dtypes

    @property
    def dtypes_text(self) -> str:
        return ", ".join(d.name.lower() for d in sorted(self.transform.dtypes))

    def transformed_length(self, dtype: DType, num_elements: int) -> int:
        """Bytes between transform and coder: the exact decompressed size a receiver allows."""
        return self.transform.encoded_length(dtype, num_elements)


# Tested on the built-in images (tests/unit/format/test_format_jpeg.py); JPEG has no per-pixel bound of its own.
JPEG_BOUND = "lossy image coding, no per-element bound; PSNR >= 30 dB on the built-in photos at 224x224"

_PROFILES = (
    CompressionProfile(0, "none", transforms.IDENTITY, coders.NONE, "exact (bit-identical)"),
    CompressionProfile(1, "fp16", transforms.FLOAT16, coders.NONE,
                       "|x-y| <= max(2^-11 |x|, 2^-25); NaN/inf kept; finite |x| >= 65520 refused"),
    CompressionProfile(2, "bf16", transforms.BFLOAT16, coders.NONE,
                       "|x-y| <= max(2^-8 |x|, 2^-134); NaN/inf kept; finite values that overflow refused"),
    CompressionProfile(3, "int8", transforms.INT8_AFFINE, coders.NONE,
                       "|x-y| <= scale*(1/2 + 2^-40) + u |y|, u = unit roundoff of the dtype; non-finite refused"),
    CompressionProfile(4, "zstd", transforms.IDENTITY, coders.ZSTD, "exact (bit-identical)"),
    CompressionProfile(5, "lz4", transforms.IDENTITY, coders.LZ4, "exact (bit-identical)"),
    CompressionProfile(6, "shuffle-zstd", transforms.SHUFFLE, coders.ZSTD, "exact (bit-identical)"),
    CompressionProfile(7, "int8-zstd", transforms.INT8_AFFINE, coders.ZSTD, "as int8"),
    CompressionProfile(8, "jpeg-q75", transforms.IMAGE, coders.JPEG_Q75, JPEG_BOUND),
    CompressionProfile(9, "jpeg-q90", transforms.IMAGE, coders.JPEG_Q90, JPEG_BOUND),
)
PROFILES: dict[int, CompressionProfile] = {p.profile_id: p for p in _PROFILES}
_BY_NAME = {p.name: p for p in _PROFILES}


def get_profile(id_or_name: int | str | CompressionProfile) -> CompressionProfile:
    """A profile by wire id or name; FormatError(unknown_profile) otherwise."""
    if isinstance(id_or_name, CompressionProfile):
        return id_or_name
    found = _BY_NAME.get(id_or_name) if isinstance(id_or_name, str) else PROFILES.get(id_or_name)
    if found is None:
        raise FormatError(ErrorCode.UNKNOWN_PROFILE,
                          f"compression profile {id_or_name!r} is not defined; known: "
                          + ", ".join(f"{p.profile_id}={p.name}" for p in _PROFILES))
    return found
