"""Job specs for the driven (batch) mode of the local node: one JSON object per line on stdin.

    {"model": "mobilenet_v2", "partition": "block_3_project_BN", "image": "builtin:chelsea",
     "encoding": "tlv", "compression": "zstd", "repetitions": 3, "tags": {"profile": "5g-embb"}}

Besides inferences, a job can be a session action used to exercise the AIPS lifetime rules live:
{"action": "reset-decoder"} asks the remote to reset its decoder; {"action": "reconnect"} starts a new session.
Per inference, "aips" overrides the automatic AIPS policy: "auto" (send only when needed), "resend-same-id",
"resend-new-id", "omit" (send data without an AIPS even when one is needed, to provoke the error path).
"partition": "adaptive" lets splitbed.nodes.adaptive choose the partition (and compression) per inference, configured
by the optional "policy" object (docs/SCENARIOS.md). "deadline_s" bounds each inference of the job as a whole
(session setup, send, result): past it the inference is an error record with code `timeout` and the session is
closed, so the next inference starts a new one. "input_size": [height, width] runs a variable-input model
(docs/MODELS.md) at another input size: the crossing tensors change shape, so a new AIPS goes (shape_changed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from splitbed.nodes.errors import ConfigurationError
from splitbed.nodes.protocol import ENCODINGS, RESULT_MODES

MAX_JOB_LINE_BYTES = 64 * 1024
MAX_REPETITIONS = 100_000
MAX_DEADLINE_S = 86_400.0
ADAPTIVE_PARTITION = "adaptive"
ACTIONS = ("infer", "reset-decoder", "reconnect")
AIPS_POLICIES = ("auto", "resend-same-id", "resend-new-id", "omit")
_KEYS = {"action", "job_id", "model", "partition", "image", "encoding", "compression", "repetitions", "tags",
         "aips", "result_mode", "top_k", "link", "policy", "deadline_s", "input_size"}


@dataclass
class Job:
    action: str = "infer"
    job_id: str | None = None
    model: str = "mobilenet_v2"
    partition: str | int = 0
    image: str = "builtin:chelsea"
    encoding: str = "tlv"
    compression: str | int = "none"
    repetitions: int = 1
    tags: dict[str, Any] = field(default_factory=dict)
    aips: str = "auto"
    result_mode: str = "full"
    top_k: int = 5
    link: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    deadline_s: float | None = None
    input_size: list[int] | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigurationError(f"job action {self.action!r}; choose one of {ACTIONS}")
        if self.encoding not in ENCODINGS:
            raise ConfigurationError(f"job encoding {self.encoding!r}; choose one of {ENCODINGS}")
        if self.aips not in AIPS_POLICIES:
            raise ConfigurationError(f"job aips policy {self.aips!r}; choose one of {AIPS_POLICIES}")
        if self.result_mode not in RESULT_MODES:
            raise ConfigurationError(f"job result_mode {self.result_mode!r}; choose one of {RESULT_MODES}")
        if not _is_int(self.repetitions) or not 1 <= self.repetitions <= MAX_REPETITIONS:
            raise ConfigurationError(f"job repetitions must be an integer 1..{MAX_REPETITIONS}, got "
                                     f"{self.repetitions!r}")
        if not _is_int(self.top_k) or not 1 <= self.top_k <= 1000:
            raise ConfigurationError(f"job top_k must be an integer 1..1000, got {self.top_k!r}")
        if not isinstance(self.tags, dict):
            raise ConfigurationError("job tags must be a JSON object")
        if self.link is not None and not isinstance(self.link, dict):
            raise ConfigurationError("job link must be a JSON object (e.g. {\"profile\": ..., \"backend\": ...})")
        for name in ("model", "image"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigurationError(f"job {name} must be a non-empty string")
        if not isinstance(self.partition, (str, int)) or isinstance(self.partition, bool):
            raise ConfigurationError("job partition must be a partition name or id")
        if self.policy is not None and (not isinstance(self.policy, dict)
                                        or self.partition != ADAPTIVE_PARTITION):
            raise ConfigurationError('job policy must be a JSON object and goes with "partition": "adaptive"')
        if self.deadline_s is not None and (isinstance(self.deadline_s, bool)
                                            or not isinstance(self.deadline_s, (int, float))
                                            or not 0 < self.deadline_s <= MAX_DEADLINE_S):
            raise ConfigurationError(f"job deadline_s must be a number of seconds in (0, {MAX_DEADLINE_S:g}], got "
                                     f"{self.deadline_s!r}")
        if self.input_size is not None:
            from splitbed.models.registry import MAX_INPUT_SIDE, MIN_INPUT_SIDE

            size = self.input_size
            if not isinstance(size, (list, tuple)) or len(size) != 2 or \
                    not all(_is_int(v) and MIN_INPUT_SIDE <= v <= MAX_INPUT_SIDE for v in size):
                raise ConfigurationError(f"job input_size must be [height, width], each {MIN_INPUT_SIDE}.."
                                         f"{MAX_INPUT_SIDE}, got {size!r}")
            self.input_size = [int(size[0]), int(size[1])]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_job(line: str | bytes) -> Job:
    """A Job from one JSON line, with a specific error for anything unknown or malformed."""
    if len(line) > MAX_JOB_LINE_BYTES:
        raise ConfigurationError(f"job line of {len(line)} bytes exceeds {MAX_JOB_LINE_BYTES}")
    try:
        raw = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"job line is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError("a job line must be a JSON object")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigurationError(f"unknown job fields {unknown}; known: {sorted(_KEYS)}")
    try:
        return Job(**raw)
    except TypeError as exc:
        raise ConfigurationError(f"bad job: {exc}") from None
