"""The session protocol's control messages as typed values (docs/PROTOCOL.md), used by both nodes.

One frozen dataclass per message type: `from_body(body)` checks a received JSON object field by field (a field
missing or of the wrong JSON type is a `bad_control_message` ProtocolError naming the message and the field, as
`protocol.require` words it) and `to_body()` gives the object to send. `decode(unit)` turns a received control
unit into its message, `encode(message)` a message into the bytes of its unit. Checks that need the session's
state (the offered models, the unit a reply answers, the partition sent) belong to the session machines
(ue_session, edge_session), not here.

A RESULT is checked completely here, because every figure of the local node's record derives from it: the
remote's timestamps, its kernel receive stamp and why it may have none, its TCP state, the predictions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from splitbed.host.tcpinfo import checked_fields
from splitbed.nodes import protocol as proto
from splitbed.nodes import rxstamp
from splitbed.nodes.errors import ProtocolError
from splitbed.nodes.protocol import MsgType, require

NUM_CLASSES = 1000  # ImageNet classes: a full-mode RESULT carries one score each (splitbed.models.labels)
RESULT_STAMPS = ("remote_first_byte", "remote_last_byte", "remote_tail_start", "remote_tail_end",
                 "remote_result_send", "remote_lock_request")
REST_STAMP = "remote_result_rest_send"  # a split RESULT's: when its RESULT_REST went (docs/PROTOCOL.md 3.6)


def _bad(message: str) -> ProtocolError:
    return ProtocolError("bad_control_message", message)


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _events(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A reply's `aips_events`: a list of objects (anything else counts as none, as before)."""
    value = body.get("aips_events") or []
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


# --- configuration stage -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    """`auth_nonce` / `auth_proof`: the shared-secret handshake (splitbed.nodes.auth), when a secret is set."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    protocol_version: int
    boot_id: str = ""
    client: dict[str, Any] = field(default_factory=dict)
    auth_nonce: Any = None
    auth_proof: Any = None

    def to_body(self) -> dict[str, Any]:
        body = {"protocol_version": self.protocol_version, "boot_id": self.boot_id, "client": self.client}
        for key in ("auth_nonce", "auth_proof"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Hello:
        client = body.get("client")
        return cls(require(body, "protocol_version", int, msg="HELLO"), str(body.get("boot_id", "")),
                   client if isinstance(client, dict) else {}, body.get("auth_nonce"), body.get("auth_proof"))


@dataclass(frozen=True)
class ModelOffer:
    """One offered model: its name, the remote's weights (WeightsInfo as a dict), input shape and partitions."""

    name: str
    weights: dict[str, Any] | None = None
    input_shape: list[int] = field(default_factory=list)
    partitions: list[dict[str, Any]] = field(default_factory=list)
    runtime: dict[str, Any] | None = None  # the inference runtime that runs its tails (ModelRunner.runtime_info)

    def to_body(self) -> dict[str, Any]:
        body = {"name": self.name, "weights": self.weights, "input_shape": list(self.input_shape),
                "partitions": list(self.partitions)}
        if self.runtime is not None:
            body["runtime"] = self.runtime
        return body


@dataclass(frozen=True)
class Offer:
    """The remote's partitioning configuration. Read leniently: a field of the wrong type counts as absent, and
    the local node then refuses what it needs and does not find (a model, a carriage).

    `auth`: with a shared secret, first a challenge ({scheme, nonce}: the OFFER then says nothing else about the
    node), then, after the proof, the full OFFER with the node's own proof. `server` (host, software, GPU) comes in
    ACCEPT since 2026; remotes before sent it here, and the local node still reads it from either."""

    TYPE: ClassVar[MsgType] = MsgType.OFFER
    protocol_version: int = proto.PROTOCOL_VERSION
    boot_id: str = ""
    models: tuple[ModelOffer, ...] = ()
    compression_profiles: list[dict[str, Any]] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)
    result_modes: list[str] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    inference_call: str = ""
    auth: dict[str, Any] | None = None
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def is_challenge(self) -> bool:
        return self.auth is not None and "nonce" in self.auth and "proof" not in self.auth

    def model(self, name: str) -> ModelOffer | None:
        return next((m for m in self.models if m.name == name), None)

    def to_body(self) -> dict[str, Any]:
        if self.is_challenge:
            return {"protocol_version": self.protocol_version, "auth": self.auth}
        body = {"protocol_version": self.protocol_version, "boot_id": self.boot_id,
                "models": [m.to_body() for m in self.models], "compression_profiles": self.compression_profiles,
                "encodings": list(self.encodings), "result_modes": list(self.result_modes), "limits": self.limits,
                "inference_call": self.inference_call}
        if self.server:
            body["server"] = self.server
        if self.auth is not None:
            body["auth"] = self.auth
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Offer:
        def dict_of(key: str) -> dict[str, Any]:
            value = body.get(key)
            return value if isinstance(value, dict) else {}

        def list_of(key: str) -> list[Any]:
            value = body.get(key)
            return value if isinstance(value, list) else []

        def model(entry: dict[str, Any]) -> ModelOffer:
            weights, shape, parts = entry.get("weights"), entry.get("input_shape"), entry.get("partitions")
            runtime = entry.get("runtime")
            return ModelOffer(str(entry["name"]), weights if isinstance(weights, dict) else None,
                              shape if isinstance(shape, list) else [], parts if isinstance(parts, list) else [],
                              runtime if isinstance(runtime, dict) else None)

        models = tuple(model(m) for m in list_of("models") if isinstance(m, dict) and isinstance(m.get("name"), str))
        version = _optional_int(body, "protocol_version")
        auth = body.get("auth")
        return cls(proto.PROTOCOL_VERSION if version is None else version, str(body.get("boot_id", "")), models,
                   list_of("compression_profiles"), [e for e in list_of("encodings") if isinstance(e, str)],
                   [m for m in list_of("result_modes") if isinstance(m, str)], dict_of("limits"),
                   str(body.get("inference_call", "")), auth if isinstance(auth, dict) else None, dict_of("server"))


@dataclass(frozen=True)
class Select:
    TYPE: ClassVar[MsgType] = MsgType.SELECT
    model: str
    encoding: str
    result_mode: Any = "full"
    top_k: Any = 5
    session_id: str | None = None
    weights: dict[str, Any] | None = None
    verify: bool = False
    result_split: bool = False  # each RESULT in two units: its leading members, then RESULT_REST (PROTOCOL.md 3.6)

    def to_body(self) -> dict[str, Any]:
        body = {"model": self.model, "encoding": self.encoding, "result_mode": self.result_mode,
                "top_k": self.top_k, "session_id": self.session_id, "weights": self.weights, "verify": self.verify}
        if self.result_split:  # absent otherwise: the SELECT of a node that predates the split
            body["result_split"] = True
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Select:
        model = require(body, "model", str, msg="SELECT")
        encoding = require(body, "encoding", str, msg="SELECT")
        verify, split = body.get("verify", False), body.get("result_split", False)
        if not isinstance(verify, bool):
            raise _bad(f"verify must be true or false, got {verify!r}")
        if not isinstance(split, bool):
            raise _bad(f"result_split must be true or false, got {split!r}")
        session_id = body.get("session_id")
        weights = body.get("weights")
        return cls(model, encoding, str(body.get("result_mode", "full")), body.get("top_k", 5),
                   session_id if isinstance(session_id, str) else None,
                   weights if isinstance(weights, dict) else None, verify, split)

    def refusal(self, offered: tuple[str, ...]) -> ProtocolError | None:
        """Why the remote cannot serve this selection, in the order the remote checks it; None when it can."""
        if self.model not in offered:
            return ProtocolError("unknown_model", f"model {self.model!r} is not offered; offered: "
                                 f"{', '.join(offered)}")
        if self.encoding not in proto.ENCODINGS:
            return ProtocolError("unknown_encoding", f"encoding {self.encoding!r}; choose one of {proto.ENCODINGS}")
        if self.result_mode not in proto.RESULT_MODES:
            return _bad(f"result_mode {self.result_mode!r}; choose {proto.RESULT_MODES}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or not 1 <= self.top_k <= 1000:
            return _bad(f"top_k must be an integer 1..1000, got {self.top_k!r}")
        return None


@dataclass(frozen=True)
class Accept:
    TYPE: ClassVar[MsgType] = MsgType.ACCEPT
    session_id: str
    model: str
    encoding: str
    result_mode: str
    top_k: int
    verify: bool
    weights: dict[str, Any] | None = None
    server: dict[str, Any] = field(default_factory=dict)  # the remote's host, software and GPU, for the records
    result_split: bool = False  # the remote splits each RESULT (it was asked to, and knows how): PROTOCOL.md 3.6

    def to_body(self) -> dict[str, Any]:
        body = {"session_id": self.session_id, "model": self.model, "encoding": self.encoding,
                "result_mode": self.result_mode, "top_k": self.top_k, "verify": self.verify, "weights": self.weights,
                "server": self.server}
        if self.result_split:
            body["result_split"] = True
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Accept:
        weights, server = body.get("weights"), body.get("server")
        return cls(str(body.get("session_id", "")), str(body.get("model", "")), str(body.get("encoding", "")),
                   str(body.get("result_mode", "")), _optional_int(body, "top_k") or 0, body.get("verify") is True,
                   weights if isinstance(weights, dict) else None, server if isinstance(server, dict) else {},
                   body.get("result_split") is True)


@dataclass(frozen=True)
class ClockPing:
    TYPE: ClassVar[MsgType] = MsgType.CLOCK_PING
    t1: int

    def to_body(self) -> dict[str, Any]:
        return {"t1": self.t1}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ClockPing:
        return cls(require(body, "t1", int, msg="CLOCK_PING"))


@dataclass(frozen=True)
class ClockPong:
    TYPE: ClassVar[MsgType] = MsgType.CLOCK_PONG
    t1: int
    t2: int
    t3: int
    after_unit: int | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"t1": self.t1, "t2": self.t2, "t3": self.t3}
        if self.after_unit is not None:
            body["after_unit"] = self.after_unit
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ClockPong:
        return cls(require(body, "t1", int, msg="CLOCK_PONG"), require(body, "t2", int, msg="CLOCK_PONG"),
                   require(body, "t3", int, msg="CLOCK_PONG"), _optional_int(body, "after_unit"))


# --- data phase ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reset:
    TYPE: ClassVar[MsgType] = MsgType.RESET

    def to_body(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Reset:
        return cls()


@dataclass(frozen=True)
class ResetDone:
    TYPE: ClassVar[MsgType] = MsgType.RESET_DONE
    after_unit: int | None
    aips_events: list[dict[str, Any]] = field(default_factory=list)

    def to_body(self) -> dict[str, Any]:
        return {"after_unit": self.after_unit, "aips_events": self.aips_events}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ResetDone:
        return cls(_optional_int(body, "after_unit"), _events(body))


@dataclass(frozen=True)
class Prepare:
    TYPE: ClassVar[MsgType] = MsgType.PREPARE
    partition_id: int
    input_size: tuple[int, int] | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"partition_id": self.partition_id}
        if self.input_size is not None:
            body["input_size"] = list(self.input_size)
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Prepare:
        size = body.get("input_size")
        if size is not None and not (isinstance(size, list) and len(size) == 2
                                     and all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
            raise _bad(f"PREPARE input_size must be [height, width], got {size!r}")
        return cls(require(body, "partition_id", int, msg="PREPARE"), None if size is None else (size[0], size[1]))


@dataclass(frozen=True)
class Prepared:
    TYPE: ClassVar[MsgType] = MsgType.PREPARED
    after_unit: int | None
    partition_id: int
    partition_name: str
    build_ms: float
    cut: list[dict[str, Any]] = field(default_factory=list)
    edge_device: dict[str, Any] | None = None  # the tail's device plan (splitbed.devices.figures), None: host

    def cut_signature(self) -> list[tuple[Any, tuple[Any, ...], Any]]:
        """(name, shape, dtype) per crossing tensor, comparable with the local node's own cut."""
        return [(c.get("name"), tuple(c.get("shape", ())), c.get("dtype")) for c in self.cut]

    def to_body(self) -> dict[str, Any]:
        return {"after_unit": self.after_unit, "partition_id": self.partition_id,
                "partition_name": self.partition_name, "build_ms": self.build_ms, "cut": self.cut,
                "edge_device": self.edge_device}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Prepared:
        cut = body.get("cut", [])
        build = body.get("build_ms", 0.0)
        device = body.get("edge_device")
        return cls(_optional_int(body, "after_unit"), _optional_int(body, "partition_id") or 0,
                   str(body.get("partition_name", "")),
                   float(build) if isinstance(build, (int, float)) and not isinstance(build, bool) else 0.0,
                   [c for c in cut if isinstance(c, dict)] if isinstance(cut, list) else [],
                   device if isinstance(device, dict) else None)


@dataclass(frozen=True)
class Error:
    """An error reply. Read leniently (a reply that cannot even say its code is still an error: `unknown`)."""

    TYPE: ClassVar[MsgType] = MsgType.ERROR
    code: str
    message: str
    fatal: bool
    aips_events: list[dict[str, Any]] = field(default_factory=list)
    seq: int | None = None
    after_unit: int | None = None

    def to_body(self) -> dict[str, Any]:
        body = proto.error_body(self.code, self.message, fatal=self.fatal, aips_events=self.aips_events,
                                seq=self.seq)
        if self.after_unit is not None:
            body["after_unit"] = self.after_unit
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Error:
        return cls(str(body.get("code", "unknown")), str(body.get("message", "")), bool(body.get("fatal", True)),
                   _events(body), _optional_int(body, "seq"), _optional_int(body, "after_unit"))


@dataclass(frozen=True)
class Checksum:
    TYPE: ClassVar[MsgType] = MsgType.CHECKSUM
    after_unit: int | None
    tensor_crc32: list[Any] = field(default_factory=list)

    def to_body(self) -> dict[str, Any]:
        return {"after_unit": self.after_unit, "tensor_crc32": self.tensor_crc32}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Checksum:
        crcs = body.get("tensor_crc32")
        return cls(_optional_int(body, "after_unit"), crcs if isinstance(crcs, list) else [])


@dataclass(frozen=True)
class ResultFigures:
    """What a RESULT says about the inference's timing, transfer and TCP state, every field checked: what the
    local node's record takes from it besides the predictions."""

    stamps: dict[str, int]              # RESULT_STAMPS, all integers
    last_byte_kernel: int | None        # the remote kernel's receive stamp of the last byte, if any
    uplink_end_reason: str | None       # why there is no such stamp (rxstamp.END_REASONS), None when there is
    uplink_out_of_order_packets: int | None
    remote_inference_ms: float
    remote_decode_ms: float
    remote_queue_wait_ms: float
    remote_tail_build_ms: float
    downlink_tcp: dict[str, Any] | None
    rest_send: int | None = None        # a split RESULT's `remote_result_rest_send` (in `stamps` too), if sent

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ResultFigures:
        raw_stamps = require(body, "timestamps_ns", dict, msg="RESULT")
        stamps: dict[str, int] = {}
        for key in RESULT_STAMPS:
            value = raw_stamps.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise _bad(f"RESULT timestamps_ns lacks an integer {key}")
            stamps[key] = value
        kernel = kernel_stamp(raw_stamps, "remote_last_byte_kernel", not_after=stamps["remote_last_byte"])
        rest_send = raw_stamps.get(REST_STAMP)  # optional: whole RESULTs, and remotes before it, have none
        if rest_send is not None:
            if not isinstance(rest_send, int) or isinstance(rest_send, bool) \
                    or rest_send < stamps["remote_result_send"]:
                raise _bad(f"RESULT timestamps_ns {REST_STAMP} must be an integer no earlier than remote_result_send")
            stamps[REST_STAMP] = rest_send
        return cls(
            stamps=stamps, last_byte_kernel=kernel, rest_send=rest_send,
            uplink_end_reason=end_reason(body.get("uplink_end_reason"), stamped=kernel is not None),
            uplink_out_of_order_packets=count_field(body.get("uplink_out_of_order_packets")),
            remote_inference_ms=float(require(body, "remote_inference_ms", (int, float), msg="RESULT")),
            remote_decode_ms=_float(body, "remote_decode_ms"), remote_queue_wait_ms=_float(body, "remote_queue_wait_ms"),
            remote_tail_build_ms=_float(body, "remote_tail_build_ms"),
            downlink_tcp=tcp_state_field(body.get("downlink_tcp")))


# The members a RESULT's receiver needs before `local_end` (which unit it answers, its events, what it predicts):
# the edge writes them first, so that the local node reads them at once and parses the rest after `local_end`.
RESULT_LEADING = ("after_unit", "partition_id", "aips_events", "top")


@dataclass(frozen=True)
class Result:
    """A RESULT. What the local node needs to know which unit it answers and what it predicts is read at once:
    `after_unit`, `partition_id`, `aips_events`, and the predictions when asked (`predictions()`, checked for the
    result mode). Everything else the record takes from it, `figures` (the remote's stamps, its kernel receive
    stamp and why it may have none, its timings and TCP state), is checked whole when first read: the local node
    reads it after `local_end`, so that checking the testbed's own measurements is not part of the inference's
    end-to-end latency (docs/METRICS.md, "The testbed's own share"); a RESULT that contradicts itself is refused
    all the same. `from_body` checks everything at once.

    A RESULT received as a unit (`decode`) whose payload begins with the RESULT_LEADING members, as the edge writes
    it, is parsed in two steps: those members at once, the whole payload when `body` is first read (after
    `local_end`), which then also refuses a payload that is not one valid JSON object, or that repeats one of
    those members with another value (a ProtocolError there, as from `figures`).

    `body` keeps the whole object as received, for the fields recorded as they came (resources, extra)."""

    TYPE: ClassVar[MsgType] = MsgType.RESULT
    after_unit: int | None
    partition_id: int
    aips_events: list[dict[str, Any]]
    given: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the body, when parsed whole
    text: str | None = field(default=None, compare=False, repr=False)  # else its payload, parsed when first read
    leading: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # RESULT_LEADING of `text`

    def to_body(self) -> dict[str, Any]:
        return dict(self.body)

    @property
    def body(self) -> dict[str, Any]:
        """The whole object (for a RESULT parsed in two steps: parsed when first read, and held to its leading
        members). A plain property where the body is at hand: the edge encodes its RESULT through it."""
        return self.given if self.text is None else self._whole

    @functools.cached_property
    def _whole(self) -> dict[str, Any]:
        assert self.text is not None
        body = proto.decode_control_text(MsgType.RESULT, self.text)
        for key, value in self.leading.items():
            if body.get(key) != value:
                raise _bad(f"RESULT repeats {key} with another value")
        return body

    @classmethod
    def received(cls, body: dict[str, Any]) -> Result:
        """A received RESULT; its `figures` are checked when first read."""
        partition_id = _optional_int(body, "partition_id")
        return cls(_optional_int(body, "after_unit"), -1 if partition_id is None else partition_id, _events(body),
                   body)

    @classmethod
    def received_unit(cls, payload: bytes | bytearray | memoryview) -> Result:
        """A RESULT from its unit's payload: in two steps where it begins with the RESULT_LEADING members (see
        the class), else parsed whole now."""
        text = proto.control_text(MsgType.RESULT, payload)
        leading = proto.leading_members(text, RESULT_LEADING)
        if leading is None:
            return cls.received(proto.decode_control_text(MsgType.RESULT, text))
        partition_id = _optional_int(leading, "partition_id")
        return cls(_optional_int(leading, "after_unit"), -1 if partition_id is None else partition_id,
                   _events(leading), text=text, leading=leading)

    def completed(self, rest: ResultRest) -> Result:
        """A split RESULT (its leading unit, this one) joined with the RESULT_REST behind it: one RESULT whose body
        holds the members of both. A RESULT_REST that answers another unit, or repeats a member of the leading
        unit with another value, is refused (its `figures` are checked when first read, as for any RESULT)."""
        body = dict(self.body)
        for key, value in rest.body.items():
            if key in body and body[key] != value:
                raise _bad(f"RESULT_REST repeats {key} with another value than its RESULT")
            body[key] = value
        return Result.received(body)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Result:
        """A received RESULT checked whole now."""
        result = cls.received(body)
        result.figures  # noqa: B018 -- raises on a RESULT that contradicts itself
        return result

    @classmethod
    def outgoing(cls, body: dict[str, Any]) -> Result:
        """A RESULT this node builds to send: carried as it is (the receiver checks it)."""
        return cls(body.get("after_unit"), body.get("partition_id", -1), list(body.get("aips_events", [])), body)

    @functools.cached_property
    def figures(self) -> ResultFigures:
        """The RESULT's stamps, timings, transfer and TCP figures, checked (ProtocolError if they contradict)."""
        return ResultFigures.from_body(self.body)

    def predictions(self, result_mode: str, top_k: int) -> list[tuple[int, float]]:
        """(class, score) of the best `top_k`: ranked here from all the scores (full mode) or as the remote
        ranked them (topk mode)."""
        if result_mode == "full":
            preds = require(self.body, "preds", list, msg="RESULT")
            if len(preds) != NUM_CLASSES or not all(isinstance(p, (int, float)) for p in preds):
                raise _bad(f"RESULT preds must be {NUM_CLASSES} numbers")
            return top_classes(np.asarray(preds, dtype=np.float64), top_k)
        pairs = []
        for item in require(self.leading if "top" in self.leading else self.body, "top", list, msg="RESULT")[:top_k]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                    and 0 <= item[0] < NUM_CLASSES and isinstance(item[1], (int, float))):
                raise _bad(f"RESULT top entry {item!r} is not [class, score]")
            pairs.append((item[0], float(item[1])))
        return pairs


@dataclass(frozen=True)
class ResultRest:
    """The members of a split RESULT that its leading unit (a RESULT of RESULT_LEADING alone, and `preds` in full
    mode) left out: the remote's stamps, timings, resources and TCP state, sent once the remote has read its
    resource counters (docs/PROTOCOL.md 3.6). `after_unit` names the unit both answer."""

    TYPE: ClassVar[MsgType] = MsgType.RESULT_REST
    after_unit: int | None
    body: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_body(self) -> dict[str, Any]:
        return dict(self.body)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ResultRest:
        return cls(_optional_int(body, "after_unit"), body)


def top_classes(row: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(index, score) of the `k` best scores of a 1-D row, best first, equal scores in descending index order:
    exactly what `np.argsort(row, kind="stable")[::-1][:k]` ranks (NaN above every number), without sorting the
    row. The edge ranks with it between the tail and the RESULT (the testbed's own share, docs/METRICS.md), after
    a model call that left the caches cold, where each NumPy call counts: k argmax scans of a reversed copy (the
    first maximum of the reversed row is the highest index among equal scores, and argmax takes the first NaN as
    the maximum), each pick then lowered to -inf. A pick that reads -inf may be a lowered one, so then, as for a
    row that is not floating point, the whole row is sorted. Scores are Python floats of the row's own values."""
    n = row.shape[0]
    if 0 < k < n and row.dtype.kind == "f":
        work = row[::-1].copy()
        picks = []
        for _ in range(k):
            j = int(work.argmax())
            score = float(work[j])
            if score == -math.inf:
                break
            picks.append((n - 1 - j, float(row[n - 1 - j])))
            work[j] = -math.inf
        else:
            return picks
    return [(int(i), float(row[i])) for i in np.argsort(row, kind="stable")[::-1][:k]]


def _float(body: dict[str, Any], key: str) -> float:
    value = body.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"RESULT field {key!r} must be a number, got {type(value).__name__}")
    return float(value)


# --- validators of what a RESULT says about the transfer ------------------------------------------------------

def kernel_stamp(stamps: dict[str, Any], key: str, *, not_after: int) -> int | None:
    """An optional kernel receive stamp from the remote's RESULT: null, or an integer no later than the read."""
    value = stamps.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value > not_after:
        raise _bad(f"RESULT timestamps_ns {key} must be null or an integer no later than remote_last_byte, got "
                   f"{value!r}")
    return value


def end_reason(value: Any, *, stamped: bool) -> str | None:
    """The remote's reason for ending the delivery at its read: null with a kernel stamp, else a known reason."""
    if stamped and value is None:
        return None
    if not stamped and value in rxstamp.READ_REASONS:
        return str(value)
    raise _bad("RESULT uplink_end_reason must be null with a kernel stamp and one of "
               f"{', '.join(rxstamp.READ_REASONS)} without one, got {str(value)[:40]!r}")


def count_field(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(f"RESULT uplink_out_of_order_packets must be null or a count, got {value!r}")
    return value


def tcp_state_field(value: Any) -> dict[str, Any] | None:
    """The remote's TCP state from a RESULT: null (a remote that cannot read it) or a complete TcpState."""
    if value is None:
        return None
    try:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        return checked_fields(value)  # TcpState.from_dict(value).to_dict(), without the dataclass between
    except ValueError as exc:
        raise _bad(f"RESULT downlink_tcp: {exc}") from None


# --- units <-> messages --------------------------------------------------------------------------------------

Message = (Hello | Offer | Select | Accept | ClockPing | ClockPong | Reset | ResetDone | Prepare | Prepared | Error
           | Checksum | Result | ResultRest)
TYPES: dict[int, Any] = {cls.TYPE: cls for cls in (Hello, Offer, Select, Accept, ClockPing, ClockPong, Reset,
                                                        ResetDone, Prepare, Prepared, Error, Checksum, Result,
                                                        ResultRest)}


def decode(unit_type: int, payload: bytes | bytearray | memoryview) -> Message:
    """The typed message of a received control unit (not JSON_BASELINE, which carries tensors)."""
    if unit_type == MsgType.RESULT:
        return Result.received_unit(payload)
    body = proto.decode_control(unit_type, payload)
    kind = TYPES.get(unit_type)  # keyed by MsgType, an IntEnum: its plain code finds it too
    if kind is None:
        raise ProtocolError("unexpected_message", f"{MsgType(unit_type).name} is not a control message")
    message: Message = kind.from_body(body)
    return message


def encode(message: Message) -> bytes:
    """The control unit (TLV header + compact JSON) of a message."""
    return proto.encode_control(message.TYPE, message.to_body())
