"""Lossless byte coders of the compression profiles (none, zstd, lz4 block), with bounded decompression.

`decompress(payload, size)` returns exactly `size` bytes or raises FormatError(decompression_failed); it never
allocates more than `size` bytes, whatever the payload claims (no decompression bombs).

Thread safety: python-zstandard's compression and decompression contexts must never be used by two threads at
once (a shared one corrupts data and crashes the process), and the remote node decodes one session per thread.
So every thread gets its own contexts (`_zstd_contexts`); the lz4 block functions keep no state between calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

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

    def compress(self, data: memoryview) -> Buffer:
        return data

    def decompress(self, payload: memoryview, size: int) -> Buffer:
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

    def compress(self, data: memoryview) -> Buffer:
        return _zstd_contexts.compressor.compress(data)

    def decompress_bytes(self, size: int) -> int:
        return size

    def decompress(self, payload: memoryview, size: int) -> Buffer:
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

    def compress(self, data: memoryview) -> Buffer:
        return lz4.block.compress(data, store_size=False)

    def decompress_bytes(self, size: int) -> int:
        return 2 * size  # python-lz4 decompresses into a scratch buffer, then copies it into the bytes returned

    def decompress(self, payload: memoryview, size: int) -> Buffer:
        try:
            out = lz4.block.decompress(payload, uncompressed_size=size)
        except lz4.block.LZ4BlockError as exc:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"lz4 block does not decompress within {size} bytes: {exc}") from None
        if len(out) != size:
            raise FormatError(ErrorCode.DECOMPRESSION_FAILED,
                              f"lz4 block decompressed to {len(out)} bytes, the AIPS implies {size}")
        return out


NONE = Coder()
ZSTD = ZstdCoder()
LZ4 = Lz4Coder()
