"""What the decoder reports: one event per step, or a sentinel saying it needs bytes / the stream is over."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from splitbed.format.aips import Aips
from splitbed.format.errors import ErrorCode, FormatError


class EndReason(str, Enum):
    """Why an AIPS stopped being active: the lifetime rule that applied (docs/FORMAT.md, "AIPS lifetime")."""

    NEW_AIPS_SAME_ID = "new_aips_same_id"
    NEW_AIPS_OTHER_ID = "new_aips_other_id"
    TENSOR_COUNT_CHANGED = "tensor_count_changed"
    SHAPE_CHANGED = "shape_changed"
    INVALID_AIPS = "invalid_aips"
    NEW_SESSION = "new_session"
    RESET = "reset"


class Sentinel:
    """A named marker returned by Decoder.next_event() instead of an event."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: No complete unit is buffered: feed() more bytes.
NEED_DATA = Sentinel("NEED_DATA")
#: end_of_stream() was called and every event has been returned.
STREAM_ENDED = Sentinel("STREAM_ENDED")


@dataclass(frozen=True, slots=True)
class AipsActivated:
    """A valid AIPS unit was parsed; it describes the data units that follow."""

    aips: Aips
    unit_size: int
    stream_offset: int


@dataclass(frozen=True, slots=True)
class AipsEnded:
    """The active AIPS ended; `reason` names the rule, `detail` says what changed."""

    aips_id: int
    reason: EndReason
    detail: str


@dataclass(frozen=True, slots=True, eq=False)
class TensorsDecoded:
    """One data unit decoded: the tensors of one inference, in AIPS order (read-only arrays)."""

    aips_id: int
    partition_id: int
    tensor_ids: tuple[int, ...]
    tensors: tuple[np.ndarray, ...]
    unit_size: int
    payload_sizes: tuple[int, ...]
    decoded_sizes: tuple[int, ...]
    stream_offset: int

    @property
    def by_id(self) -> dict[int, np.ndarray]:
        return dict(zip(self.tensor_ids, self.tensors, strict=True))


@dataclass(frozen=True, slots=True)
class UnknownUnit:
    """A unit of an undefined type (3-255) was skipped by its length."""

    unit_type: int
    length: int
    stream_offset: int


@dataclass(frozen=True, slots=True)
class FormatErrorEvent:
    """A unit broke the format. recoverable=True: the unit was skipped and decoding goes on with the next one;
    False: the stream cannot be framed any more (close the connection, or reset())."""

    code: ErrorCode
    message: str
    recoverable: bool
    unit_type: int | None
    stream_offset: int

    def to_exception(self) -> FormatError:
        return FormatError(self.code, self.message)


Event = AipsActivated | AipsEnded | TensorsDecoded | UnknownUnit | FormatErrorEvent
