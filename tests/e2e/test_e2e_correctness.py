"""Check 1, correctness through the emulated network: the predictions the local node gets back equal the unsplit
model run here, in the test process, with the same weights on the same preprocessed image.

Lossless carriages: identical top-5 classes and every top-5 probability within 1e-5 of the unsplit model's, and
the tensors the remote decoded are bit-identical to the head's (CRC-32 on both nodes, `--verify-delivery`).
Lossy compression profiles: the top-1 class agrees with the unsplit model; the remote decoded exactly what the
format's decoder gives here for the reference head's tensors (CRC-32), those tensors are within the profile's
documented error bound of the head's, and the probabilities equal the tail's output on them within 1e-5.
The local node's head is also checked against the reference head (CRC-32 of the tensors it sent)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from splitbed.plugin.matrix import SuiteCase, suite_settings
from splitbed.plugin.reference import Reference, error_bound_violations, top_k

pytestmark = pytest.mark.root

PROBABILITY_TOLERANCE = 1e-5
TOP = 5


def crc32s(arrays: list[np.ndarray]) -> list[int]:
    from splitbed.nodes.formatio import tensor_crc32

    return [tensor_crc32(a) for a in arrays]


def check_top_k(record: dict[str, Any], expected: np.ndarray, k: int) -> None:
    """The record's top-k are the expected top-k: same probabilities in rank order (within the tolerance), each
    class's expected probability equal to the reported one, and the same classes wherever the expected
    probabilities are not tied within the tolerance (ties may be listed in either order)."""
    got = record["predictions"][:k]
    assert len(got) == k, f"the record has {len(got)} predictions, expected {k}"
    order = top_k(expected, k)
    ranked = np.sort(expected)[::-1]
    for rank, prediction in enumerate(got):
        assert abs(prediction["score"] - ranked[rank]) <= PROBABILITY_TOLERANCE, (
            f"rank {rank}: network score {prediction['score']:.8f}, unsplit model {ranked[rank]:.8f}")
        index = prediction["class_index"]
        assert abs(expected[index] - prediction["score"]) <= PROBABILITY_TOLERANCE, (
            f"class {index}: network score {prediction['score']:.8f}, unsplit model {expected[index]:.8f}")
        tied = any(abs(ranked[rank] - ranked[other]) <= PROBABILITY_TOLERANCE
                   for other in (rank - 1, rank + 1) if 0 <= other < len(ranked))
        if not tied:
            assert index == order[rank], f"rank {rank}: network class {index}, unsplit model class {order[rank]}"


@pytest.mark.suite("correctness")
def test_e2e(suite_case: SuiteCase, testbed: Any, reference: Reference) -> None:
    image = suite_settings()["image"]
    record = testbed.infer(suite_case.job(top_k=TOP))
    assert reference.same_weights_as(record["weights"]), (
        f"the nodes ran weights {record['weights']}, the reference here {reference.weights}: not comparable")
    assert record["partition_name"] == suite_case.partition and record["encoding"] == suite_case.encoding
    assert record["link"]["profile"]["name"] == suite_case.profile

    head = reference.head(suite_case.partition, image)
    check = record["delivery_check"]
    assert check is not None, "the suite's local node runs with --verify-delivery"
    assert check["sent_crc32"] == crc32s(head), "the local node's head tensors differ from the reference head's"
    unsplit = reference.unsplit(image)

    if suite_case.lossless:
        assert check["match"], f"lossless carriage changed the tensors on the way: {check}"
        check_top_k(record, unsplit, TOP)
        return

    decoded_here, lossy_probabilities = reference.through_format(suite_case.partition, image,
                                                                 suite_case.compression)
    assert check["received_crc32"] == crc32s(decoded_here), (
        "the remote decoded other tensors than the format's decoder gives here for the same head output")
    for index, (sent, received) in enumerate(zip(head, decoded_here, strict=True)):
        bad = error_bound_violations(suite_case.compression, sent, received)
        assert bad == 0, f"tensor {index}: {bad} elements outside the {suite_case.compression} error bound"
    check_top_k(record, lossy_probabilities, TOP)
    unsplit_top = top_k(unsplit, 1)[0]
    got_top = record["predictions"][0]["class_index"]
    assert got_top == unsplit_top or abs(unsplit[got_top] - unsplit[unsplit_top]) <= PROBABILITY_TOLERANCE, (
        f"top-1 through {suite_case.compression}: class {got_top}, unsplit model: class {unsplit_top}")
