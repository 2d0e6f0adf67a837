"""A whole session through both protocol state machines, with no socket and no model: the UE machine
(ue_session) and the edge machine (edge_session) exchange bytes in memory, a fake tail stands in for the model.

Configuration stage (HELLO, OFFER, clock ping, SELECT, ACCEPT), PREPARE, a first inference with its AIPS, an AIPS
change (another shape: a new AIPS with a new id ends the old one), a reused AIPS, a decoder reset, an inference
that omits the AIPS it needs (a non-fatal error answering its data unit), a JSON-baseline session, and the
configuration errors a remote must refuse; every RESULT read back through the checks the local node applies and
the uplink byte stream decoded by the format decoder alone (docs/PROTOCOL.md)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from splitbed.format import AipsActivated, AipsEnded, Decoder, TensorsDecoded, UnknownUnit
from splitbed.nodes import formatio
from splitbed.nodes import messages as m
from splitbed.nodes.budget import MemoryBudget
from splitbed.nodes.edge_session import Build, EdgeSession, Infer, PeerFailed, Send
from splitbed.nodes.errors import ConfigurationError, ProtocolError, RemoteError
from splitbed.nodes.protocol import DOWNLINK_CONTROL, HEADER, HEADER_SIZE, ControlUnit, UnitFramer
from splitbed.nodes.timing import Transfer
from splitbed.nodes.ue_session import Choices, UeSession

MODEL = "mobilenet_v2"
WEIGHTS = {"source": "random", "seed": 0, "sha256": "ab", "requested": "random:0"}
PARTITION = 5


def offer() -> m.Offer:
    return m.Offer(1, "edge-boot", (m.ModelOffer(MODEL, WEIGHTS, [224, 224, 3], []),),
                   formatio.compression_profiles(), ["tlv", "json-baseline"], ["full", "topk"], {}, "predict_on_batch")


@dataclass
class Wire:
    """Both machines and the bytes between them; `clock` is a fake CLOCK_MONOTONIC shared by both sides."""

    ue: UeSession
    edge: EdgeSession
    clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1_000_000, 1_000))
    uplink: bytearray = field(default_factory=bytearray)
    tails: list[list[np.ndarray]] = field(default_factory=list)
    downlink: UnitFramer = field(default_factory=lambda: UnitFramer(accepted_control=DOWNLINK_CONTROL))
    chunk: int = 7  # bytes per read of the edge; 0: one read per unit (each unit whole, as on a fast link)

    def send(self, pieces: list[Any], chunk: int | None = None) -> list[m.Message]:
        """Send UE bytes to the edge (cut into `chunk`-byte reads), play the edge's actions, return its replies."""
        data = b"".join(bytes(memoryview(p).cast("B")) for p in pieces)
        self.uplink += data
        replies: list[m.Message] = []
        for read in _reads(data, self.chunk if chunk is None else chunk):
            self.edge.receive(read, next(self.clock))
            while (action := self.edge.next_action()) is not None:
                replies += self._play(action)
        return replies

    def _play(self, action: object) -> list[m.Message]:
        if isinstance(action, Send):
            out = []
            for frame in self.downlink.feed(m.encode(action.message)):
                assert isinstance(frame, ControlUnit)
                out.append(m.decode(frame.unit_type, frame.payload))
            return out
        if isinstance(action, Build):
            cut = [{"tensor_id": 0, "name": "block_3_project_BN", "shape": [1, 28, 28, 24], "dtype": "float32"}]
            self.edge.built(action, partition_id=action.partition_id, name="block_3_project_BN", build_ms=3.0,
                            cut=cut)
            return []
        assert isinstance(action, Infer)
        self.tails.append(action.decoded.arrays)
        preds = np.zeros((1, 1000), np.float32)
        preds[0, int(sum(float(a.sum()) for a in action.decoded.arrays)) % 1000] = 1.0  # the fake tail's answer
        start = next(self.clock)
        # as the remote node does: a session that asked for split RESULTs gets the leading unit first
        out = []
        if self.edge.result_lead(action, partition_id=action.decoded.partition_id, preds=preds):
            while (queued := self.edge.next_action()) is not None:
                out += self._play(queued)
        self.edge.result(action, partition_id=action.decoded.partition_id, partition_name="block_3_project_BN",
                         preds=preds, tail_start_ns=start, tail_end_ns=start + 500, lock_request_ns=start,
                         queue_ms=0.0, built_ms=0.0, resources={}, concurrent_sessions=1, downlink_tcp=None,
                         last_byte_kernel=action.last_byte_ns - 100, out_of_order=0, end_reason=None)
        return out


def _reads(data: bytes, chunk: int) -> list[memoryview]:
    """`data` cut into reads of `chunk` bytes, or (0) at its unit boundaries."""
    view = memoryview(data)
    if chunk:
        return [view[start:start + chunk] for start in range(0, len(data), chunk)]
    reads, pos = [], 0
    while pos < len(data):
        _type, length = HEADER.unpack_from(data, pos)
        reads.append(view[pos:pos + HEADER_SIZE + length])
        pos += HEADER_SIZE + length
    return reads


def configured(encoding: str = "tlv", verify: bool = True, chunk: int = 7,
               budget: MemoryBudget | None = None, split: bool = False) -> Wire:
    clock = itertools.count(1_000_000, 1_000)
    edge = EdgeSession(offer(), clock=lambda: next(clock), perf=lambda: next(clock), budget=budget)
    wire = Wire(UeSession(Choices(MODEL, encoding, "full", 3, "session-1", WEIGHTS, verify, result_split=split)),
                edge, clock, chunk=chunk)
    ue = wire.ue
    [offered] = wire.send([m.encode(ue.start(boot_id="ue-boot", client={}))])
    ue.offered(offered)
    t1 = next(wire.clock)
    [pong] = wire.send([m.encode(ue.ping(t1))])
    sample = ue.ponged(pong, next(wire.clock))
    assert sample.t1_ns < sample.t2_ns <= sample.t3_ns < sample.t4_ns  # the edge stamped on the same fake clock
    [accept] = wire.send([m.encode(ue.select())])
    assert ue.accepted(accept).session_id == "session-1" and wire.edge.configured
    return wire


def infer(wire: Wire, arrays: list[np.ndarray], policy: str = "auto") -> tuple[str, list[m.Message]]:
    """One inference as the local node sends it: the AIPS when the plan says so, then the data unit."""
    ue = wire.ue
    wanted = formatio.build_aips(ue.next_aips_id, PARTITION, arrays, 0)
    plan = ue.aips_plan(wanted, policy)
    aips = formatio.build_aips(plan.aips_id, PARTITION, arrays, 0) if plan.rebuild else wanted
    if not plan.send and ue.aips is not None:
        aips = ue.aips
    pieces: list[Any] = ([formatio.aips_unit(aips)] if plan.send else []) + formatio.data_unit(aips, arrays)
    ue.sent(units=2 if plan.send else 1, aips=aips if plan.send else None)
    return plan.reason, wire.send(pieces)


@pytest.mark.parametrize("chunk", [7, 0], ids=["7-byte-reads", "unit-per-read"])
def test_a_whole_session_through_both_machines(chunk: int) -> None:
    wire = configured(chunk=chunk)
    ue, edge = wire.ue, wire.edge

    request = ue.prepare(PARTITION, None)
    [prepared] = wire.send([m.encode(request)])
    ue.prepared(prepared, request, name="block_3_project_BN", cut=[("block_3_project_BN", (1, 28, 28, 24), "float32")])
    assert not ue.needs_prepare(PARTITION, None) and prepared.after_unit == ue.units_sent == 1

    first = [np.full((1, 28, 28, 24), 0.5, np.float32)]
    reason, replies = infer(wire, first)
    assert reason == "first_data"
    result, checksum = replies
    reply = ue.reply(result)
    assert reply.final is not None and reply.final.after_unit == ue.units_sent == 3
    final = reply.final
    assert [e["event"] for e in final.aips_events] == ["activated"] and final.aips_events[0]["aips_id"] == 1
    assert final.partition_id == PARTITION and final.predictions("full", 1)[0][0] == int(first[0].sum()) % 1000
    assert ue.checksum(checksum).tensor_crc32 == [formatio.tensor_crc32(first[0])]
    figures = final.figures
    transfer = Transfer.derive(first_send=figures.stamps["remote_first_byte"] - 1, result_read=next(wire.clock),
                               result_kernel=None, last_byte_read=figures.stamps["remote_last_byte"],
                               last_byte_kernel=figures.last_byte_kernel, result_send=figures.stamps["remote_result_send"],
                               offset_ns=0, uncertainty_ns=0)
    assert transfer.delivery_end == "kernel_rx" and transfer.remote_read_lag_ms == pytest.approx(100 / 1e6)
    assert 0 < transfer.remote_processing_ms < transfer.round_trip_ms
    np.testing.assert_array_equal(wire.tails[0][0], first[0])  # what the tail got is what the head sent

    # AIPS change: another shape needs a new AIPS (id 2); the remote ends the old one (shape_changed) and
    # activates the new one
    smaller = [np.full((1, 14, 14, 24), 2.0, np.float32)]
    reason, (result, checksum) = infer(wire, smaller)
    assert reason == "shape_changed" and ue.aips is not None and ue.aips.aips_id == 2
    final = ue.reply(result).final
    assert final is not None and [(e["event"], e.get("reason")) for e in final.aips_events] == [
        ("ended", "shape_changed"), ("activated", None)]
    ue.checksum(checksum)

    # the same shape again: the active AIPS is reused, one unit only
    reason, (result, _) = infer(wire, smaller)
    assert reason == "reused" and ue.reply(result).final is not None and ue.units_sent == 6

    # decoder reset: the remote ends its AIPS, the next inference must send one again
    [done] = wire.send([m.encode(ue.reset())])
    assert [e["reason"] for e in ue.reset_done(done)] == ["reset"] and ue.aips is None
    assert ue.aips_plan(formatio.build_aips(ue.next_aips_id, PARTITION, smaller, 0), "auto").reason == \
        "after_decoder_reset"

    # data that omits the AIPS it needs: a non-fatal error answering the data unit; the session goes on
    reason, [error] = infer(wire, smaller, policy="omit")
    assert reason == "omitted_on_request"
    with pytest.raises(RemoteError) as caught:
        ue.reply(error)
    assert caught.value.code == "no_active_aips" and not caught.value.fatal
    reason, (result, _) = infer(wire, smaller)
    assert reason == "after_decoder_reset" and ue.reply(result).final is not None
    assert edge.inferences == 4 and len(wire.tails) == 4

    # the uplink is a format stream: the format decoder alone gets the AIPS lifecycle and the tensors out of it
    decoder = Decoder()
    decoder.feed(bytes(wire.uplink))
    events = list(decoder.events())
    assert sum(isinstance(e, TensorsDecoded) for e in events) == 4
    assert [e.aips.aips_id for e in events if isinstance(e, AipsActivated)] == [1, 2, 3]
    assert any(isinstance(e, AipsEnded) for e in events) and any(isinstance(e, UnknownUnit) for e in events)


@pytest.mark.parametrize("chunk", [7, 0], ids=["7-byte-reads", "unit-per-read"])
def test_a_unit_over_the_memory_budget_is_refused_and_the_session_goes_on(chunk: int) -> None:
    """Refused at its header, whether its bytes come in pieces or whole: answered `memory_budget` at its end,
    nothing held, and the next unit is served."""
    wire = configured(chunk=chunk, budget=MemoryBudget(64 * 1024), verify=False)
    request = wire.ue.prepare(PARTITION, None)
    wire.ue.prepared(wire.send([m.encode(request)])[0], request, name="block_3_project_BN",
                     cut=[("block_3_project_BN", (1, 28, 28, 24), "float32")])
    reason, [refused] = infer(wire, [np.ones((1, 28, 28, 24), np.float32)])  # 75 kB: over the budget
    assert reason == "first_data" and isinstance(refused, m.Error)
    assert (refused.code, refused.fatal, refused.after_unit) == ("memory_budget", False, wire.ue.units_sent)
    assert wire.edge.budget.stats().in_use == 0 and wire.edge.framer.units_started == wire.ue.units_sent + 3
    small = [np.ones((1, 4, 4, 2), np.float32)]
    reason, [result] = infer(wire, small)
    assert isinstance(result, m.Result) and wire.ue.reply(result).final is not None
    np.testing.assert_array_equal(wire.tails[-1][0], small[0])


def test_a_json_baseline_session_and_its_result() -> None:
    wire = configured("json-baseline", verify=False)
    arrays = [np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)]
    wire.ue.sent(units=1, aips=None)
    [result] = wire.send([formatio.json_baseline_unit(arrays, PARTITION)], chunk=50)
    final = wire.ue.reply(result).final
    assert final is not None and final.partition_id == PARTITION and final.aips_events == []
    np.testing.assert_array_equal(wire.tails[0][0], arrays[0])
    # the edge writes the members the local node needs at once first: it reads those, the rest after local_end
    assert final.text is not None and list(final.leading) == list(m.RESULT_LEADING)
    assert final.predictions("full", 3) == final.predictions("topk", 3)
    assert final.body["after_unit"] == final.after_unit and final.figures.stamps["remote_result_send"] > 0


@pytest.mark.parametrize("chunk", [7, 0], ids=["7-byte-reads", "unit-per-read"])
def test_a_split_result_joins_to_the_whole_one(chunk: int) -> None:
    """SELECT result_split (docs/PROTOCOL.md 3.6): the RESULT's leading members, then RESULT_REST with the rest,
    then the CHECKSUM; joined, they are the members of a whole RESULT, with the leading unit's send stamp (and
    the RESULT_REST's own)."""
    whole, split = configured(chunk=chunk), configured(chunk=chunk, split=True)
    assert not whole.ue.result_split and split.ue.result_split
    arrays = [np.full((1, 28, 28, 24), 0.5, np.float32)]
    result, checksum = infer(whole, arrays)[1]
    lead, rest, checksum_after = infer(split, arrays)[1]
    assert isinstance(lead, m.Result) and isinstance(rest, m.ResultRest) and isinstance(checksum_after, m.Checksum)
    final = split.ue.reply(lead).final
    assert final is not None and set(final.body) == {*m.RESULT_LEADING, "preds"}
    assert final.predictions("full", 3) == whole.ue.reply(result).final.predictions("full", 3)  # type: ignore[union-attr]
    joined = split.ue.rest(rest, final)
    assert set(joined.body) == set(result.body) and joined.after_unit == final.after_unit == split.ue.units_sent
    assert joined.figures.stamps["remote_tail_end"] < joined.figures.stamps["remote_result_send"]
    # the RESULT_REST's own send, after the leading unit's (what a downlink bounded by it can be late by)
    assert joined.figures.rest_send is not None
    assert joined.figures.rest_send >= joined.figures.stamps["remote_result_send"]
    assert whole.ue.reply(result).final.figures.rest_send is None  # type: ignore[union-attr]
    assert split.ue.checksum(checksum_after).tensor_crc32 == [formatio.tensor_crc32(arrays[0])]

    # what the local node refuses in place of the RESULT_REST
    with pytest.raises(ProtocolError, match="answers unit"):
        split.ue.rest(m.ResultRest(final.after_unit - 1, dict(rest.body, after_unit=final.after_unit - 1)), final)
    with pytest.raises(ProtocolError, match="repeats partition_id"):
        split.ue.rest(m.ResultRest(final.after_unit, dict(rest.body, partition_id=PARTITION + 1)), final)
    with pytest.raises(ProtocolError) as caught:
        split.ue.rest(checksum_after, final)
    assert caught.value.code == "unexpected_message"
    with pytest.raises(RemoteError):
        split.ue.rest(m.Error("internal_error", "the remote failed", True), final)
    with pytest.raises(ProtocolError):  # a RESULT_REST whose figures are broken: refused when the record reads them
        split.ue.rest(m.ResultRest(final.after_unit, dict(rest.body, timestamps_ns={})), final).figures  # noqa: B018


def test_a_remote_that_predates_the_split_sends_whole_results() -> None:
    """A local node that asks for split RESULTs expects them only where ACCEPT grants them; a remote that predates
    the split ignores the SELECT member (protocol version 1 both ways)."""
    select = m.Select(MODEL, "tlv", "topk", 5, "s", WEIGHTS, False, True)
    assert m.Select.from_body(select.to_body()).result_split
    assert "result_split" not in m.Select(MODEL, "tlv").to_body()  # what an old local node sends
    with pytest.raises(ProtocolError, match="result_split must be true or false"):
        m.Select.from_body(dict(select.to_body(), result_split="yes"))
    wire = configured(split=True)
    wire.ue.accept = m.Accept.from_body({k: v for k, v in wire.ue.accept.to_body().items()  # type: ignore[union-attr]
                                         if k != "result_split"})
    assert not wire.ue.result_split


def test_what_the_edge_refuses_before_and_during_configuration() -> None:
    edge = EdgeSession(offer())
    edge.receive(m.encode(m.Select(MODEL, "tlv")), 1)
    with pytest.raises(ProtocolError, match="SELECT before HELLO"):
        edge.next_action()

    edge = EdgeSession(offer())
    edge.receive(m.encode(m.Hello(2)), 1)
    with pytest.raises(ProtocolError) as caught:
        edge.next_action()
    assert caught.value.code == "unsupported_protocol_version"

    for select, code in ((m.Select("vgg16", "tlv"), "unknown_model"), (m.Select(MODEL, "xml"), "unknown_encoding")):
        edge = EdgeSession(offer())
        edge.receive(m.encode(m.Hello(1)) + m.encode(select), 1)
        assert isinstance(edge.next_action(), Send)  # the OFFER
        with pytest.raises(ProtocolError) as caught:
            edge.next_action()
        assert caught.value.code == code

    edge = EdgeSession(offer())
    edge.receive(formatio.aips_unit(formatio.build_aips(1, PARTITION, [np.zeros((1, 2), np.float32)], 0)), 1)
    with pytest.raises(ProtocolError, match="before the configuration stage finished"):
        edge.next_action()

    wire = configured()
    wire.edge.receive(m.encode(m.Error("oops", "the UE gave up", True)), 1)
    assert isinstance(wire.edge.next_action(), PeerFailed)


def test_what_the_ue_refuses_in_an_offer() -> None:
    for choices, fragment in ((Choices("vgg16", "tlv", "full", 5, "s", WEIGHTS), "does not offer model 'vgg16'"),
                              (Choices(MODEL, "xml", "full", 5, "s", WEIGHTS), "does not accept the xml carriage"),
                              (Choices(MODEL, "tlv", "full", 5, "s", dict(WEIGHTS, seed=1)), "weights differ")):
        ue = UeSession(choices)
        ue.start(boot_id="b", client={})
        with pytest.raises(ConfigurationError, match=fragment):
            ue.offered(offer())
    ue = UeSession(Choices(MODEL, "tlv", "full", 5, "s", dict(WEIGHTS, seed=1), allow_weights_mismatch=True))
    ue.start(boot_id="b", client={})
    assert ue.offered(offer()) is None and ue.offer is not None and ue.offer.model(MODEL) is not None
    with pytest.raises(RemoteError, match="busy"):
        UeSession(ue.choices, stage=ue.stage.HELLO_SENT).offered(m.Error("busy", "full", True))


def test_the_shared_secret_handshake_through_both_machines() -> None:
    """With a secret the first OFFER is a challenge that says nothing about the node; the UE answers with its
    proof, the edge answers with its own, and only then does the session go on. A wrong secret is refused."""
    secret = b"s" * 32
    edge = EdgeSession(offer(), server={"host": {"hostname": "edge"}}, secret=secret)
    ue = UeSession(Choices(MODEL, "tlv", "full", 3, "s1", WEIGHTS, secret=secret))
    down = UnitFramer(accepted_control=DOWNLINK_CONTROL)

    def exchange(message: m.Message) -> list[m.Message]:
        edge.receive(m.encode(message), 1)
        out = []
        while (action := edge.next_action()) is not None:
            assert isinstance(action, Send)
            out += [m.decode(f.unit_type, f.payload) for f in down.feed(m.encode(action.message))
                    if isinstance(f, ControlUnit)]
        return out

    [challenge] = exchange(ue.start(boot_id="b", client={}))
    assert isinstance(challenge, m.Offer) and challenge.is_challenge and challenge.models == ()
    assert set(m.encode(challenge)[5:].decode().split('"')) >= {"auth", "nonce"}  # no host, no models
    again = ue.offered(challenge)
    assert again is not None and again.auth_proof is not None
    [full] = exchange(again)
    assert ue.offered(full) is None and ue.offer is not None and ue.offer.auth is not None
    [pong] = exchange(ue.ping(5))
    ue.ponged(pong, 9)
    [accept] = exchange(ue.select())
    assert ue.accepted(accept).server == {"host": {"hostname": "edge"}}  # the host only after authentication

    stranger = EdgeSession(offer(), secret=b"t" * 32)
    intruder = UeSession(Choices(MODEL, "tlv", "full", 3, "s2", WEIGHTS, secret=secret))
    stranger.receive(m.encode(intruder.start(boot_id="b", client={})), 1)
    challenge = stranger.next_action()
    assert isinstance(challenge, Send) and isinstance(challenge.message, m.Offer) and stranger.next_action() is None
    stranger.receive(m.encode(intruder.offered(challenge.message)), 2)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError) as caught:
        stranger.next_action()
    assert caught.value.code == "auth_failed"
    early = EdgeSession(offer(), secret=secret)
    early.receive(m.encode(m.ClockPing(1)), 1)
    with pytest.raises(ProtocolError) as caught:
        early.next_action()
    assert caught.value.code == "unauthenticated"


def test_the_quick_reused_plan_is_the_one_aips_plan_gives() -> None:
    """The UE decides `reused` without building the AIPS its arrays would need; for any change it says nothing
    and aips_plan, which builds and compares, decides: both agree on every case."""
    ue = UeSession(Choices(MODEL, "tlv", "full", 3, "s", WEIGHTS))
    arrays = [np.zeros((1, 4, 4, 2), np.float32)]
    assert ue.reused_plan(PARTITION, arrays, 0, "auto") is None  # no AIPS active yet
    ue.sent(units=2, aips=formatio.build_aips(ue.next_aips_id, PARTITION, arrays, 0))
    cases = [(PARTITION, arrays, 0, "auto"), (PARTITION, [arrays[0].astype(">f4")], 0, "auto"),
             (PARTITION + 1, arrays, 0, "auto"), (PARTITION, [np.zeros((1, 4, 4, 3), np.float32)], 0, "auto"),
             (PARTITION, [arrays[0].astype(np.float16)], 0, "auto"), (PARTITION, arrays * 2, 0, "auto"),
             (PARTITION, arrays, formatio.profile_id("fp16")[0], "auto"), (PARTITION, arrays, 0, "omit"),
             (PARTITION, arrays, 0, "resend-same-id"), (PARTITION, arrays, 0, "resend-new-id")]
    reasons = []
    for partition_id, case, profile, policy in cases:
        full = ue.aips_plan(formatio.build_aips(ue.next_aips_id, partition_id, case, profile), policy)
        assert ue.reused_plan(partition_id, case, profile, policy) == (full if full.reason == "reused" else None)
        reasons.append(full.reason)
    assert reasons == ["reused", "reused", "partition_changed", "shape_changed", "shape_changed",
                       "tensor_count_changed", "compression_changed", "omitted_on_request", "forced_same_id",
                       "forced_new_id"]
