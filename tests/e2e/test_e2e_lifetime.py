"""Check 2, the AIPS lifetime rules of S4-260189 in live sessions through the emulated network, one test per rule.
Each test starts a fresh session and asserts what the remote node's format decoder reported (the `aips_events`
of each record: event, aips_id, reason) and what the data that followed could or could not use.

Rules: an AIPS starts when the decoder parses it; it ends when a new AIPS with the same or a different id
arrives, a new session begins, the decoder is reset, or the number of tensors or a tensor's shape changes.
The model and partitions come from splitbed/data/suite.toml [lifetime]."""

from __future__ import annotations

from typing import Any

import pytest

from splitbed.plugin.matrix import SuiteCase, check_settings

pytestmark = pytest.mark.root

SETTINGS = check_settings("lifetime")


def events(record: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in record.get("aips_events") or [] if e.get("event") == kind]


def fresh_session(testbed: Any, case: SuiteCase) -> dict[str, Any]:
    """A new session, then one inference that activates AIPS 1 there; returns that inference's record."""
    action = testbed.run({"action": "reconnect", "model": case.model})[0]
    assert action["action"] == "reconnect" and action["session_id"] != action["old_session_id"]
    record = testbed.infer(case.job())
    assert record["session_id"] == action["session_id"]
    return record


@pytest.mark.suite("lifetime")
def test_aips_starts_when_the_decoder_parses_it(suite_case: SuiteCase, testbed: Any) -> None:
    first = fresh_session(testbed, suite_case)
    assert first["aips_sent"] and first["aips_reason"] == "first_data" and first["aips_id"] == 1
    [activated] = events(first, "activated")
    assert activated["aips_id"] == 1 and activated["partition_id"] == first["partition_id"]
    assert activated["num_tensors"] == 1 and activated["shapes"] == [first["tensors"][0]["shape"]]
    assert not events(first, "ended")
    second = testbed.infer(suite_case.job())
    assert not second["aips_sent"] and second["aips_reason"] == "reused" and second["aips_id"] == 1
    assert second["aips_events"] == [], "the active AIPS served the second data unit without any change"


@pytest.mark.suite("lifetime")
def test_a_new_aips_with_the_same_id_ends_the_active_one(suite_case: SuiteCase, testbed: Any) -> None:
    fresh_session(testbed, suite_case)
    record = testbed.infer(suite_case.job(aips="resend-same-id"))
    assert record["aips_sent"] and record["aips_reason"] == "forced_same_id" and record["aips_id"] == 1
    assert [(e["aips_id"], e["reason"]) for e in events(record, "ended")] == [(1, "new_aips_same_id")]
    assert [e["aips_id"] for e in events(record, "activated")] == [1]


@pytest.mark.suite("lifetime")
def test_a_new_aips_with_another_id_ends_the_active_one(suite_case: SuiteCase, testbed: Any) -> None:
    fresh_session(testbed, suite_case)
    record = testbed.infer(suite_case.job(aips="resend-new-id"))
    assert record["aips_sent"] and record["aips_reason"] == "forced_new_id" and record["aips_id"] == 2
    assert [(e["aips_id"], e["reason"]) for e in events(record, "ended")] == [(1, "new_aips_other_id")]
    assert [e["aips_id"] for e in events(record, "activated")] == [2]


@pytest.mark.suite("lifetime")
def test_a_new_session_starts_without_an_aips(suite_case: SuiteCase, testbed: Any) -> None:
    fresh_session(testbed, suite_case)
    action = testbed.run({"action": "reconnect", "model": suite_case.model})[0]
    orphan = testbed.run(suite_case.job(aips="omit"))[0]
    assert orphan["session_id"] == action["session_id"] and not orphan["aips_sent"]
    assert orphan["status"] == "error" and orphan["error"]["code"] == "no_active_aips", (
        f"data without an AIPS in a new session must be refused, got {orphan['status']}: {orphan['error']}")
    record = testbed.infer(suite_case.job())
    assert record["aips_sent"] and record["aips_id"] == 1, "AIPS ids start at 1 in every session"
    assert [e["aips_id"] for e in events(record, "activated")] == [1] and not events(record, "ended")


@pytest.mark.suite("lifetime")
def test_a_decoder_reset_ends_the_active_aips(suite_case: SuiteCase, testbed: Any) -> None:
    first = fresh_session(testbed, suite_case)
    reset = testbed.run({"action": "reset-decoder", "model": suite_case.model})[0]
    assert reset["action"] == "reset-decoder" and reset["session_id"] == first["session_id"]
    assert [(e["aips_id"], e["reason"]) for e in events(reset, "ended")] == [(1, "reset")]
    orphan = testbed.run(suite_case.job(aips="omit"))[0]
    assert orphan["status"] == "error" and orphan["error"]["code"] == "no_active_aips", orphan["error"]
    record = testbed.infer(suite_case.job())
    assert record["aips_sent"] and record["aips_reason"] == "after_decoder_reset"
    assert len(events(record, "activated")) == 1 and not events(record, "ended")


@pytest.mark.suite("lifetime")
def test_a_change_of_tensor_count_ends_the_active_aips(suite_case: SuiteCase, testbed: Any) -> None:
    fresh_session(testbed, suite_case)
    record = testbed.infer(suite_case.job(partition=SETTINGS["two_tensor_partition"]))
    assert record["aips_sent"] and len(record["tensors"]) == 2
    assert [(e["aips_id"], e["reason"]) for e in events(record, "ended")] == [(1, "tensor_count_changed")]
    [activated] = events(record, "activated")
    assert activated["aips_id"] == 2 and activated["num_tensors"] == 2


@pytest.mark.suite("lifetime")
def test_a_change_of_tensor_shape_ends_the_active_aips(suite_case: SuiteCase, testbed: Any) -> None:
    first = fresh_session(testbed, suite_case)
    record = testbed.infer(suite_case.job(partition=SETTINGS["other_shape_partition"]))
    assert record["aips_sent"] and len(record["tensors"]) == 1
    assert record["tensors"][0]["shape"] != first["tensors"][0]["shape"]
    assert [(e["aips_id"], e["reason"]) for e in events(record, "ended")] == [(1, "shape_changed")]
    [activated] = events(record, "activated")
    assert activated["aips_id"] == 2 and activated["shapes"] == [record["tensors"][0]["shape"]]


@pytest.mark.suite("lifetime")
def test_an_input_size_change_on_the_same_partition_ends_the_active_aips(suite_case: SuiteCase,
                                                                         testbed: Any) -> None:
    """The testbed contribution's own example of a shape change: a new input size on a fully convolutional head changes the
    crossing tensor's shape while the partition stays; the new AIPS keeps the partition_id."""
    first = fresh_session(testbed, suite_case)
    size = SETTINGS["other_input_size"]
    record = testbed.infer(suite_case.job(input_size=size))
    assert record["status"] == "ok", record["error"]
    assert record["input_shape"] == [1, *size, 3] and record["partition_id"] == first["partition_id"]
    assert record["aips_sent"] and record["aips_reason"] == "shape_changed" and len(record["tensors"]) == 1
    assert record["tensors"][0]["shape"] != first["tensors"][0]["shape"]
    assert [(e["aips_id"], e["reason"]) for e in events(record, "ended")] == [(1, "shape_changed")]
    [activated] = events(record, "activated")
    assert activated["aips_id"] == 2 and activated["partition_id"] == first["partition_id"]
    assert activated["shapes"] == [record["tensors"][0]["shape"]]
    back = testbed.infer(suite_case.job())
    assert back["aips_reason"] == "shape_changed" and back["tensors"][0]["shape"] == first["tensors"][0]["shape"]
