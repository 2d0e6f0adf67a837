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

from netem.fields import Checker
from splitbed.nodes.errors import ConfigurationError
from splitbed.nodes.protocol import DEFAULT_RESULT_MODE, ENCODINGS, RESULT_MODES

MAX_JOB_LINE_BYTES = 64 * 1024
MAX_REPETITIONS = 100_000
MAX_DEADLINE_S = 86_400.0
ADAPTIVE_PARTITION = "adaptive"
ACTIONS = ("infer", "reset-decoder", "reconnect")
AIPS_POLICIES = ("auto", "resend-same-id", "resend-new-id", "omit")
_check = Checker(ConfigurationError)
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
    result_mode: str = DEFAULT_RESULT_MODE
    top_k: int = 5
    link: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    deadline_s: float | None = None
    input_size: list[int] | None = None

    def __post_init__(self) -> None:
        _check.choice("job action", self.action, ACTIONS)
        _check.choice("job encoding", self.encoding, ENCODINGS)
        _check.choice("job aips policy", self.aips, AIPS_POLICIES)
        _check.choice("job result_mode", self.result_mode, RESULT_MODES)
        _check.integer("job repetitions", self.repetitions, low=1, high=MAX_REPETITIONS)
        _check.integer("job top_k", self.top_k, low=1, high=1000)
        _check.table("job tags", self.tags, what="a JSON object")
        if self.link is not None:
            _check.table("job link", self.link, what='a JSON object (e.g. {"profile": ..., "backend": ...})')
        _check.string("job model", self.model, non_empty=True)
        _check.string("job image", self.image, non_empty=True)
        if not isinstance(self.partition, (str, int)) or isinstance(self.partition, bool):
            raise ConfigurationError("job partition must be a partition name or id")
        if self.policy is not None and (not isinstance(self.policy, dict)
                                        or self.partition != ADAPTIVE_PARTITION):
            raise ConfigurationError('job policy must be a JSON object and goes with "partition": "adaptive"')
        if self.deadline_s is not None:
            _check.number("job deadline_s", self.deadline_s, low=0.0, high=MAX_DEADLINE_S, low_open=True)
        if self.input_size is not None:
            from splitbed.models.registry import MAX_INPUT_SIDE, MIN_INPUT_SIDE

            size = self.input_size
            if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(
                    isinstance(v, int) and not isinstance(v, bool) and MIN_INPUT_SIDE <= v <= MAX_INPUT_SIDE
                    for v in size):
                raise ConfigurationError(f"job input_size must be [height, width], each {MIN_INPUT_SIDE}.."
                                         f"{MAX_INPUT_SIDE}, got {size!r}")
            self.input_size = [int(size[0]), int(size[1])]


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
    _check.keys("job", raw, _KEYS, noun="job fields")
    try:
        return Job(**raw)
    except TypeError as exc:
        raise ConfigurationError(f"bad job: {exc}") from None
