"""splitbed.nodes.messages: every control message survives encode -> decode unchanged, and a received one is
checked field by field (bad_control_message naming the message and the field); a RESULT completely."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from splitbed.models import registry
from splitbed.models.registry import CAMERA_PARTITION_ID
from splitbed.nodes import messages as m
from splitbed.nodes.errors import ProtocolError
from splitbed.nodes.protocol import HEADER_SIZE, MsgType, encode_control, leading_members
from splitbed.nodes.remote import offered_partitions

SAMPLES: list[m.Message] = [
    m.Hello(1, "boot", {"host": {"hostname": "ue"}}),
    m.Offer(1, "boot", (m.ModelOffer("mobilenet_v2", {"source": "random", "seed": 0}, [224, 224, 3],
                                     [{"partition_id": 5}]),),
            [{"id": 0, "name": "none"}], ["tlv", "json-baseline"], ["full", "topk"], {"max_unit_bytes": 1}, "call",
            {"scheme": "hmac-sha256", "proof": "ab"}),
    m.Offer(auth={"scheme": "hmac-sha256", "nonce": "00" * 32}),  # the challenge: nothing else about the node
    m.Hello(1, "boot", {}, auth_nonce="11" * 32, auth_proof="cd"),
    m.Select("mobilenet_v2", "tlv", "topk", 3, "s1", {"source": "random"}, True),
    m.Accept("s1", "mobilenet_v2", "tlv", "topk", 3, True, {"source": "random"}, {"gpu": {"count": 0}}),
    m.ClockPing(11), m.ClockPong(11, 12, 13), m.ClockPong(11, 12, 13, after_unit=4),
    m.Reset(), m.ResetDone(3, [{"event": "ended", "aips_id": 1, "reason": "reset"}]),
    m.Prepare(5), m.Prepare(5, (160, 128)),
    m.Prepared(2, 5, "block_3_project_BN", 12.5, [{"tensor_id": 0, "name": "t", "shape": [1, 2], "dtype": "float32"}]),
    m.Error("shape_mismatch", "no", False, [], None, 7), m.Checksum(7, [1, 2]),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda x: type(x).__name__)
def test_every_message_round_trips(message: m.Message) -> None:
    unit = m.encode(message)
    assert unit[0] == message.TYPE
    assert m.decode(unit[0], unit[HEADER_SIZE:]) == message


@pytest.mark.parametrize("name", registry.names())
def test_the_offer_lists_a_registered_models_candidates_then_its_camera_pseudo_partition(name: str) -> None:
    """docs/PROTOCOL.md section 2: the edge takes partition 255 (the camera image, full offload) of every
    registered model, so the OFFER says so, after the data file's candidates and in the same shape."""
    spec = registry.get(name)
    offered = offered_partitions(name, spec)
    assert [p["partition_id"] for p in offered] == [p.partition_id for p in spec.partitions] + [CAMERA_PARTITION_ID]
    assert offered[-1] == {"partition_id": 255, "name": "camera", "tensors": 1}
    assert all(set(p) == {"partition_id", "name", "tensors"} for p in offered)
    assert spec.partition(offered[-1]["partition_id"]).name == "camera"  # what the edge resolves it to
    offer = m.Offer(1, "boot", (m.ModelOffer(name, None, list(spec.input_shape), offered),))
    decoded = m.decode(MsgType.OFFER, m.encode(offer)[HEADER_SIZE:])
    assert isinstance(decoded, m.Offer) and decoded.models[0].partitions == offered


def _result_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "after_unit": 3, "partition_id": 5, "remote_inference_ms": 7.5, "remote_decode_ms": 0.5,
        "timestamps_ns": {"remote_first_byte": 1, "remote_last_byte": 10, "remote_tail_start": 11,
                          "remote_tail_end": 18, "remote_result_send": 20, "remote_lock_request": 10,
                          "remote_last_byte_kernel": 9},
        "uplink_end_reason": None, "uplink_out_of_order_packets": 0, "downlink_tcp": None,
        "aips_events": [{"event": "activated", "aips_id": 1}],
        "preds": [0.0] * 998 + [0.25, 0.75], "top": [[999, 0.75], [998, 0.25]]}
    body.update(changes)
    return body


def test_a_good_result_is_read_whole() -> None:
    result = m.Result.from_body(_result_body())
    figures = result.figures
    assert (result.after_unit, result.partition_id, figures.last_byte_kernel, figures.uplink_end_reason) == (3, 5, 9, None)
    assert figures.stamps["remote_result_send"] == 20 and figures.remote_inference_ms == 7.5
    assert figures.remote_queue_wait_ms == 0.0 and result.aips_events == [{"event": "activated", "aips_id": 1}]
    assert figures.rest_send is None and m.REST_STAMP not in figures.stamps  # a whole RESULT has none
    split = m.Result.from_body(_result_body(timestamps_ns=dict(_result_body()["timestamps_ns"],
                                                               remote_result_rest_send=20))).figures
    assert split.rest_send == split.stamps[m.REST_STAMP] == 20
    assert result.predictions("full", 2) == [(999, 0.75), (998, 0.25)]
    assert result.predictions("topk", 1) == [(999, 0.75)]
    assert m.decode(MsgType.RESULT, encode_control(MsgType.RESULT, _result_body())[HEADER_SIZE:]) == result


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"timestamps_ns": [1]}, "field 'timestamps_ns' must be dict"),
    ({"timestamps_ns": {"remote_first_byte": 1}}, "lacks an integer remote_last_byte"),
    ({"timestamps_ns": dict(_result_body()["timestamps_ns"], remote_last_byte_kernel=11)}, "no later than"),
    ({"uplink_end_reason": "stamping_off"}, "uplink_end_reason"),
    ({"uplink_end_reason": "bounded_by_rest",  # a downlink's bound, never an uplink's reason
      "timestamps_ns": {k: v for k, v in _result_body()["timestamps_ns"].items() if k != "remote_last_byte_kernel"}},
     "uplink_end_reason"),
    ({"uplink_out_of_order_packets": -1}, "uplink_out_of_order_packets"),
    ({"remote_inference_ms": "7"}, "remote_inference_ms"),
    ({"remote_decode_ms": [1]}, "remote_decode_ms"),
    ({"downlink_tcp": {"cwnd_segments": 10}}, "downlink_tcp"),
    ({"timestamps_ns": dict(_result_body()["timestamps_ns"], remote_result_rest_send=19)}, "remote_result_rest_send"),
    ({"timestamps_ns": dict(_result_body()["timestamps_ns"], remote_result_rest_send=True)}, "remote_result_rest_send"),
])
def test_a_result_that_contradicts_itself_is_refused(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        m.Result.from_body(_result_body(**changes))
    assert caught.value.code == "bad_control_message" and fragment in caught.value.message
    # received off the wire, its unit and predictions are read at once and its figures when the record takes them
    # (after local_end): refused then, with the same error
    received = m.decode(MsgType.RESULT, encode_control(MsgType.RESULT, _result_body(**changes))[HEADER_SIZE:])
    assert isinstance(received, m.Result) and received.after_unit == 3
    assert received.predictions("topk", 1) == [(999, 0.75)]
    with pytest.raises(ProtocolError) as later:
        received.figures  # noqa: B018
    assert later.value.message == caught.value.message


def _leading_first(body: dict[str, Any]) -> dict[str, Any]:
    """The body in the edge's order: m.RESULT_LEADING first."""
    return {**{key: body[key] for key in m.RESULT_LEADING}, **body}


def test_a_result_in_the_edges_order_is_read_in_two_steps() -> None:
    """Its unit, events and predictions at once; the whole payload when the record takes it; the same RESULT as
    one read whole."""
    body = _leading_first(_result_body())
    received = m.decode(MsgType.RESULT, encode_control(MsgType.RESULT, body)[HEADER_SIZE:])
    assert isinstance(received, m.Result) and received.text is not None and "_whole" not in vars(received)
    assert (received.after_unit, received.partition_id, received.aips_events) == (3, 5, body["aips_events"])
    assert received.predictions("topk", 2) == [(999, 0.75), (998, 0.25)] and "_whole" not in vars(received)
    assert received.body == body and received == m.Result.from_body(body)
    assert received.figures == m.Result.from_body(body).figures


@pytest.mark.parametrize(("tail", "fragment"), [
    (',"top":[[1,0.5]]}', "repeats top with another value"),
    (',"after_unit":4}', "repeats after_unit with another value"),
    (',"remote_inference_ms":}', "not valid JSON"),
    (',"x":NaN}', "not valid JSON"),
    ("}]", "not valid JSON"),
])
def test_a_two_step_result_whose_rest_is_wrong_is_refused_when_read(tail: str, fragment: str) -> None:
    """What comes after the leading members is checked when the body is first read (after local_end): a payload
    that is not one valid object, or that gives a leading member again with another value, is refused then."""
    text = json.dumps(_leading_first(_result_body()), separators=(",", ":"))[:-1] + tail
    received = m.decode(MsgType.RESULT, text.encode())
    assert isinstance(received, m.Result) and received.predictions("topk", 1) == [(999, 0.75)]
    with pytest.raises(ProtocolError, match=fragment) as caught:
        received.figures  # noqa: B018
    assert caught.value.code == "bad_control_message"


@pytest.mark.parametrize("text", [
    '{"partition_id":5,"after_unit":3,"aips_events":[],"top":[]}',  # another order
    '{"after_unit":3,"partition_id":5,"aips_events":[]}',  # one missing
    '{"after_unit":3, "partition_id":5,"aips_events":[],"top":[]}',  # not compact
    '{"after_unit":NaN,"partition_id":5,"aips_events":[],"top":[]}',
    '{"after_unit":3,"partition_id":5,"aips_events":[],"top":[]x',
    '{"after_unit":3,"partition_id":5,"aips_events":[],"top":[',
    '[{"after_unit":3}]', "",
])
def test_leading_members_only_from_a_compact_object_that_begins_with_them(text: str) -> None:
    assert leading_members(text, m.RESULT_LEADING) is None
    assert leading_members('{"after_unit":3,"partition_id":5,"aips_events":[],"top":[[1,0.5]],"x":1}',
                           m.RESULT_LEADING) == {"after_unit": 3, "partition_id": 5, "aips_events": [],
                                                 "top": [[1, 0.5]]}


@pytest.mark.parametrize(("changes", "mode", "fragment"), [
    ({"preds": [0.5] * 10}, "full", "preds must be 1000 numbers"),
    ({"preds": None}, "full", "preds"),
    ({"top": [[1000, 0.5]]}, "topk", "is not [class, score]"),
    ({"top": "x"}, "topk", "field 'top' must be list"),
])
def test_predictions_are_checked_for_the_result_mode(changes: dict[str, Any], mode: str, fragment: str) -> None:
    result = m.Result.from_body(_result_body(**changes))
    with pytest.raises(ProtocolError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        result.predictions(mode, 5)


def _argsort_top(row: np.ndarray, k: int) -> list[tuple[int, float]]:
    return [(int(i), float(row[i])) for i in np.argsort(row, kind="stable")[::-1][:k]]


def _row(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "distinct":
        return rng.random(n)
    if kind == "few-values":  # ties everywhere, across the cut too
        return rng.integers(0, 4, n).astype(np.float64)
    if kind == "one-hot":  # a confident softmax that underflowed: one score, the rest 0
        return np.eye(1, n, int(rng.integers(0, n)))[0]
    if kind == "nan":
        return np.where(rng.random(n) < 0.01, np.nan, rng.random(n)).astype(np.float32)
    if kind == "float16":
        return rng.random(n).astype(np.float16)
    if kind == "inf":  # infinities of both signs among the scores, NaN too: -inf picks are where the scan stops
        return rng.choice(np.array([-np.inf, np.inf, np.nan, 0.5, 1.0], dtype=np.float32), n, p=[.3, .05, .05, .3, .3])
    if kind == "integer":
        return rng.integers(0, 5, n)
    return np.exp(rng.normal(0, 3, n)).astype(np.float32)


@pytest.mark.parametrize("kind", ["distinct", "few-values", "one-hot", "nan", "float16", "softmax", "inf", "integer"])
def test_top_classes_ranks_exactly_as_the_full_sort(kind: str) -> None:
    """The edge's partial sort gives the full sort's k best, in its order: equal scores by descending index
    (ties across the cut included), and rows with NaN as the full sort ranks them."""
    rng = np.random.default_rng(len(kind))
    for _ in range(300):
        n = int(rng.integers(1, 1100))
        row = _row(kind, rng, n)
        for k in {0, 1, 5, n - 1, n, n + 3}:
            top, expected = m.top_classes(row, k), _argsort_top(row, k)
            assert [i for i, _ in top] == [i for i, _ in expected]
            assert np.array_equal(np.array([s for _, s in top]), np.array([s for _, s in expected]), equal_nan=True)
            assert all(type(i) is int and type(s) is float for i, s in top)


def test_select_is_refused_in_the_order_the_remote_checks() -> None:
    with pytest.raises(ProtocolError, match="lacks the field 'model'"):
        m.Select.from_body({"encoding": "tlv"})
    with pytest.raises(ProtocolError, match="verify must be true or false"):
        m.Select.from_body({"model": "x", "encoding": "tlv", "verify": 1})
    offered = ("mobilenet_v2",)
    both_wrong = m.Select.from_body({"model": "vgg", "encoding": "xml", "top_k": 0})
    assert both_wrong.refusal(offered).code == "unknown_model"  # type: ignore[union-attr]
    assert m.Select("mobilenet_v2", "xml").refusal(offered).code == "unknown_encoding"  # type: ignore[union-attr]
    assert "result_mode" in m.Select("mobilenet_v2", "tlv", "some").refusal(offered).message  # type: ignore[union-attr]
    assert "top_k" in m.Select("mobilenet_v2", "tlv", top_k=True).refusal(offered).message  # type: ignore[union-attr]
    assert m.Select("mobilenet_v2", "tlv").refusal(offered) is None


def test_offer_and_error_replies_are_read_leniently() -> None:
    offer = m.Offer.from_body({"models": [{"name": "a", "weights": "x"}, "junk", {"no": "name"}], "encodings": "tlv"})
    assert [x.name for x in offer.models] == ["a"] and offer.models[0].weights is None
    assert offer.model("a") is not None and offer.model("b") is None and offer.encodings == []
    error = m.Error.from_body({"aips_events": "x"})
    assert (error.code, error.fatal, error.aips_events) == ("unknown", True, [])


def test_prepare_input_size_and_control_types() -> None:
    with pytest.raises(ProtocolError, match=r"PREPARE input_size must be \[height, width\]"):
        m.Prepare.from_body({"partition_id": 1, "input_size": [1, True]})
    with pytest.raises(ProtocolError, match="lacks the field 'partition_id'"):
        m.Prepare.from_body({})
    with pytest.raises(ProtocolError, match="not a control message"):
        m.decode(MsgType.JSON_BASELINE, b"{}")
