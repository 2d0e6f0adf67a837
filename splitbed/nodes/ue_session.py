"""The UE side of one session as a sans-I/O state machine (docs/PROTOCOL.md): which message to send next, what
each message from the remote means, and the session state both depend on (units sent, the AIPS the remote holds,
prepared partitions). No sockets, no clocks, no models: the local node (local.py) moves the bytes, reads the
clocks, runs the head and measures; this machine only speaks the protocol, so it is tested without either
(tests/unit/nodes/test_nodes_session.py) and any ordered, reliable byte stream can carry it (TCP today).

Configuration stage: start() -> HELLO; offered(OFFER) (with a shared secret the first OFFER is a challenge:
offered() returns the second HELLO, with the proof, to send; splitbed.nodes.auth); ping(t1) -> CLOCK_PING, ponged(CLOCK_PONG, t4) as often
as wanted; select() -> SELECT; accepted(ACCEPT). Data phase: prepare() -> PREPARE / prepared(PREPARED);
reset() -> RESET / reset_done(RESET_DONE); for an inference, aips_plan() says whether an AIPS goes and why,
sent() commits what was sent, and reply() reads the replies until the one that answers the last unit sent.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splitbed.format.aips import Aips
from splitbed.nodes import messages as m
from splitbed.nodes import protocol as proto
from splitbed.nodes.auth import ClientHandshake
from splitbed.nodes.clock import PingSample
from splitbed.nodes.errors import ConfigurationError, ProtocolError, RemoteError
from splitbed.nodes.formatio import wire_dtype

AIPS_ID_MODULO = 1 << 16  # ai_parameter_set_id is a u16 (docs/FORMAT.md)
WEIGHTS_IDENTITY = ("source", "seed", "sha256")


class Stage(enum.Enum):
    NEW = "new"
    HELLO_SENT = "hello_sent"
    OFFERED = "offered"
    SELECT_SENT = "select_sent"
    READY = "ready"


@dataclass(frozen=True)
class Choices:
    """What this session uses, fixed for its lifetime (another model or carriage is another session)."""

    model: str
    encoding: str
    result_mode: str
    top_k: int
    session_id: str
    weights: dict[str, Any]
    verify: bool = False
    allow_weights_mismatch: bool = False
    secret: bytes | None = field(default=None, repr=False)  # shared with the remote (splitbed.nodes.auth)
    result_split: bool = True  # ask for each RESULT in two units (docs/PROTOCOL.md 3.6); a remote may not know it


@dataclass(frozen=True)
class AipsPlan:
    """Whether an AIPS goes with this inference's data, why (the record's `aips_reason`) and with which id."""

    reason: str
    send: bool
    aips_id: int          # the id the data unit names
    rebuild: bool = False  # resend-same-id: the AIPS must be rebuilt with the active id


@dataclass(frozen=True)
class Reply:
    """A reply read during an inference: `final` once the one answering the last unit sent has come."""

    message: m.Message
    final: m.Result | None = None


def weights_identity(info: dict[str, Any] | None) -> tuple[Any, ...]:
    info = info or {}
    return tuple(info.get(k) for k in WEIGHTS_IDENTITY)


@dataclass
class UeSession:
    """The protocol state of one session on the UE side (see the module docstring). Not thread-safe."""

    choices: Choices
    stage: Stage = Stage.NEW
    offer: m.Offer | None = None
    accept: m.Accept | None = None
    units_sent: int = 0
    inferences: int = 0
    aips: Aips | None = None              # the AIPS the remote holds active, as far as we know
    next_aips_id: int = 1
    pending_reason: str = "first_data"    # why the next AIPS is needed when none is active
    prepared_keys: set[tuple[int, tuple[int, int] | None]] = field(default_factory=set)
    _last_ping: int | None = None
    _hello: m.Hello | None = None
    _handshake: ClientHandshake | None = None
    _challenged: bool = False

    # --- configuration stage ----------------------------------------------------------------------------

    def start(self, *, boot_id: str, client: dict[str, Any]) -> m.Hello:
        self._expect_stage(Stage.NEW, "HELLO")
        self.stage = Stage.HELLO_SENT
        self._handshake = ClientHandshake(self.choices.secret)
        self._hello = m.Hello(proto.PROTOCOL_VERSION, boot_id, client, **self._handshake.hello_fields())
        return self._hello

    def offered(self, message: m.Message) -> m.Hello | None:
        """Take the OFFER. A challenge (the remote serves only holders of the shared secret) is answered: the
        HELLO to send with the proof is returned. The full OFFER must carry the remote's own proof (when this
        node has a secret), and refuses (ConfigurationError) what this session cannot use: the model, the
        carriage, or another model's weights (head and tail must come from one model)."""
        self._expect_stage(Stage.HELLO_SENT, "OFFER")
        offer = _expect(message, m.Offer)
        assert self._handshake is not None and self._hello is not None
        if offer.is_challenge and not self._challenged:
            self._challenged = True
            return dataclasses.replace(self._hello, **self._handshake.respond(offer.auth))
        self._handshake.check_server(offer.auth)
        c = self.choices
        model = offer.model(c.model)
        if model is None:
            raise ConfigurationError(f"the remote node does not offer model {c.model!r}; it offers "
                                     f"{', '.join(o.name for o in offer.models) or 'nothing'}")
        if c.encoding not in offer.encodings:
            raise ConfigurationError(f"the remote node does not accept the {c.encoding} carriage")
        if weights_identity(model.weights) != weights_identity(c.weights) and not c.allow_weights_mismatch:
            raise ConfigurationError(
                f"weights differ: local {c.weights}, remote {model.weights}; head and tail would come from "
                "different models and predictions would be meaningless. Start both nodes with the same --weights "
                "(or pass --allow-weights-mismatch to measure traffic only)")
        self.offer, self.stage = offer, Stage.OFFERED
        return None

    def ping(self, t1: int) -> m.ClockPing:
        self._expect_stage(Stage.OFFERED, "CLOCK_PING")
        self._last_ping = t1
        return m.ClockPing(t1)

    def ponged(self, message: m.Message, t4: int) -> PingSample:
        pong = _expect(message, m.ClockPong)
        if self._last_ping is None or pong.t1 != self._last_ping:
            raise ProtocolError("bad_control_message", "CLOCK_PONG answers another ping")
        self._last_ping = None
        return PingSample(pong.t1, pong.t2, pong.t3, t4)

    def select(self) -> m.Select:
        self._expect_stage(Stage.OFFERED, "SELECT")
        self.stage = Stage.SELECT_SENT
        c = self.choices
        return m.Select(c.model, c.encoding, c.result_mode, c.top_k, c.session_id, c.weights, c.verify,
                        c.result_split)

    def accepted(self, message: m.Message) -> m.Accept:
        self._expect_stage(Stage.SELECT_SENT, "ACCEPT")
        self.accept, self.stage = _expect(message, m.Accept), Stage.READY
        return self.accept

    # --- data phase: requests with one reply --------------------------------------------------------------

    def needs_prepare(self, partition_id: int, input_size: tuple[int, int] | None) -> bool:
        return (partition_id, input_size) not in self.prepared_keys

    def prepare(self, partition_id: int, input_size: tuple[int, int] | None) -> m.Prepare:
        self._expect_stage(Stage.READY, "PREPARE")
        self.units_sent += 1
        return m.Prepare(partition_id, input_size)

    def prepared(self, message: m.Message, request: m.Prepare, *, name: str,
                 cut: list[tuple[Any, tuple[Any, ...], Any]]) -> m.Prepared:
        """Take PREPARED for `request`; both sides must cut the model the same way (`cut`: this node's
        (name, shape, dtype) per crossing tensor), or nothing measured would be meaningful."""
        reply = _expect(message, m.Prepared)
        theirs = reply.cut_signature()
        if theirs != cut:
            raise ConfigurationError(f"partition {name}: the remote cuts the model into {theirs}, this node "
                                     f"into {cut}; the two nodes do not run the same model")
        self.prepared_keys.add((request.partition_id, request.input_size))
        return reply

    def reset(self) -> m.Reset:
        self._expect_stage(Stage.READY, "RESET")
        self.units_sent += 1
        return m.Reset()

    def reset_done(self, message: m.Message) -> list[dict[str, Any]]:
        """The remote reset its decoder: no AIPS is active any more (AIPS lifetime rule "decoder reset")."""
        done = _expect(message, m.ResetDone)
        self.track_events(done.aips_events)
        self.aips, self.pending_reason = None, "after_decoder_reset"
        return done.aips_events

    # --- data phase: inferences ---------------------------------------------------------------------------

    def aips_plan(self, wanted: Aips, policy: str) -> AipsPlan:
        """Whether `wanted` (built with `next_aips_id`) must go before the data, following the AIPS lifetime
        rules unless the job's `policy` (auto | resend-same-id | resend-new-id | omit) forces otherwise."""
        reason = self._aips_reason(wanted, policy)
        active = self.aips
        if reason in ("reused", "omitted_on_request"):
            # omitted with none active: the data names the new id, which the remote does not know
            return AipsPlan(reason, False, active.aips_id if active is not None else wanted.aips_id)
        if reason == "forced_same_id" and active is not None:
            return AipsPlan(reason, True, active.aips_id, rebuild=True)
        return AipsPlan(reason, True, wanted.aips_id)

    def reused_plan(self, partition_id: int, arrays: Sequence[np.ndarray], profile_id: int,
                    policy: str) -> AipsPlan | None:
        """The plan aips_plan() gives when the active AIPS already describes `arrays` as they are (same partition,
        count, shapes, element types and compression profile, under the `auto` policy): `reused`, decided without
        building the AIPS they would need, which the local node would otherwise do for every inference between
        its head and its first send. None when the AIPS must be built and compared (aips_plan)."""
        active = self.aips
        if policy != "auto" or active is None or active.partition_id != partition_id \
                or len(active.tensors) != len(arrays):
            return None
        for spec, array in zip(active.tensors, arrays, strict=True):
            if spec.shape != array.shape or spec.compression_profile_id != profile_id \
                    or spec.dtype != wire_dtype(array.dtype):
                return None
        return AipsPlan("reused", False, active.aips_id)

    def _aips_reason(self, wanted: Aips, policy: str) -> str:
        active = self.aips
        if policy == "omit":
            return "omitted_on_request"
        if policy == "resend-same-id":
            return "forced_same_id"
        if policy == "resend-new-id":
            return "forced_new_id"
        if active is None:
            return self.pending_reason
        if active.partition_id != wanted.partition_id:
            return "partition_changed"
        if len(active.tensors) != len(wanted.tensors):
            return "tensor_count_changed"
        pairs = list(zip(active.tensors, wanted.tensors, strict=True))
        if any(a.shape != w.shape or a.dtype != w.dtype for a, w in pairs):
            return "shape_changed"
        if any(a.compression_profile_id != w.compression_profile_id for a, w in pairs):
            return "compression_changed"
        return "reused"

    def sent(self, *, units: int, aips: Aips | None) -> None:
        """Commit an inference's units before any byte goes: once one may be on the wire, the remote counts
        them. `aips`: the AIPS unit sent with them, if any (it becomes the active one)."""
        self.units_sent += units
        if aips is not None:
            self.aips = aips
            if aips.aips_id == self.next_aips_id:
                self.next_aips_id = (self.next_aips_id + 1) % AIPS_ID_MODULO

    def reply(self, message: m.Message) -> Reply:
        """One reply during an inference. Replies to earlier units of it (an ERROR on its AIPS) come first and
        are returned as they are; the one answering the last unit sent must be a RESULT (`final`). An ERROR that
        is fatal or answers the last unit raises RemoteError."""
        if not isinstance(message, (m.Result, m.Error)):
            raise ProtocolError("unexpected_message", f"expected RESULT or ERROR, got {message.TYPE.name}")
        self.track_events(message.aips_events)
        after = message.after_unit
        if isinstance(message, m.Error) and (message.fatal or after == self.units_sent):
            raise RemoteError(message.code, message.message, fatal=message.fatal, aips_events=[])
        if after == self.units_sent:
            if not isinstance(message, m.Result):
                raise ProtocolError("unexpected_message", "the reply to a data unit must be RESULT or ERROR")
            return Reply(message, message)
        if after is None or after > self.units_sent:
            raise ProtocolError("bad_control_message", f"reply answers unit {after!r}; we sent {self.units_sent}")
        return Reply(message)

    @property
    def result_split(self) -> bool:
        """Whether each RESULT comes in two units: asked for in SELECT and granted in ACCEPT (a remote that
        predates the split grants nothing and sends whole RESULTs)."""
        return self.accept is not None and self.accept.result_split and self.choices.result_split

    def rest(self, message: m.Message, result: m.Result) -> m.Result:
        """The RESULT_REST behind a split RESULT (`result`, its leading unit), joined with it."""
        rest = _expect(message, m.ResultRest)
        if rest.after_unit != result.after_unit:
            raise ProtocolError("bad_control_message", f"RESULT_REST answers unit {rest.after_unit!r}, its RESULT "
                                f"{result.after_unit!r}")
        return result.completed(rest)

    def checksum(self, message: m.Message) -> m.Checksum:
        """With verify on, a CHECKSUM follows each RESULT, answering the same unit."""
        checksum = _expect(message, m.Checksum)
        if checksum.after_unit != self.units_sent:
            raise ProtocolError("bad_control_message", f"CHECKSUM answers unit {checksum.after_unit!r}")
        return checksum

    def track_events(self, events: list[dict[str, Any]]) -> None:
        """Follow the remote's AIPS lifecycle, so that the next inference sends an AIPS when the remote has none."""
        for event in events:
            if event.get("event") == "ended" and self.aips is not None and event.get("aips_id") == self.aips.aips_id:
                self.aips = None
                self.pending_reason = f"remote_aips_ended:{event.get('reason')}"

    def _expect_stage(self, stage: Stage, what: str) -> None:
        if self.stage != stage:
            raise ProtocolError("unexpected_message", f"{what} in stage {self.stage.value} (expected {stage.value})")


def _expect(message: m.Message, kind: Any) -> Any:
    """`message` if it is a `kind`; an ERROR reply raises RemoteError, any other type is a protocol error."""
    if isinstance(message, m.Error):
        raise RemoteError(message.code, message.message, fatal=message.fatal, aips_events=list(message.aips_events))
    if not isinstance(message, kind):
        raise ProtocolError("unexpected_message", f"expected {kind.TYPE.name}, the remote sent {message.TYPE.name}")
    return message
