"""Check 1, correctness through the emulated network: the predictions the local node gets back equal the unsplit
model run here, in the test process, with the same weights on the same preprocessed image.

Lossless carriages: identical top-5 classes and every top-5 probability within 1e-5 of the unsplit model's, and
the tensors the remote decoded are bit-identical to the head's (CRC-32 on both nodes, `--verify-delivery`).
Lossy compression profiles: the top-1 class agrees with the unsplit model; the remote decoded exactly what the
format's decoder gives here for the reference head's tensors (CRC-32), those tensors are within the profile's
documented error bound of the head's, and the probabilities equal the tail's output on them within 1e-5.
The local node's head is also checked against the reference head (CRC-32 of the tensors it sent).
The reference itself must be informative (clearly non-uniform and different for another photo), else comparing
probabilities with it could not fail (random weights of scheme 1 gave MobileNetV2 an exactly uniform output)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from splitbed.plugin.matrix import SuiteCase, suite_settings
from splitbed.plugin.reference import Reference, error_bound_violations, top_k

pytestmark = pytest.mark.root

PROBABILITY_TOLERANCE = 1e-5
TOP = 5
# The reference is degenerate when its top probability is near 1/1000 or its entropy near log(1000), or when
# another photo gives nearly the same probabilities: then a wrong answer could pass the comparison.
MIN_TOP_PROBABILITY = 0.005
MIN_ENTROPY_DROP = 0.3  # nats below log(1000)
MIN_OTHER_IMAGE_DIFFERENCE = 100 * PROBABILITY_TOLERANCE
OTHER_IMAGES = ("builtin:astronaut", "builtin:coffee")


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


def check_informative(reference: Reference, image: str) -> None:
    """The unsplit model's output can tell a wrong answer from a right one (see the module docstring)."""
    probabilities = reference.unsplit(image)
    entropy = float(-(probabilities * np.log(np.clip(probabilities, 1e-30, 1.0))).sum())
    assert probabilities.max() >= MIN_TOP_PROBABILITY and entropy <= np.log(probabilities.size) - MIN_ENTROPY_DROP, (
        f"degenerate reference output for {image} (weights {reference.weights}): top probability "
        f"{probabilities.max():.6f}, entropy {entropy:.4f} nats of at most {np.log(probabilities.size):.4f}")
    other = next(o for o in OTHER_IMAGES if o != image)
    difference = float(np.abs(reference.unsplit(other) - probabilities).max())
    assert difference >= MIN_OTHER_IMAGE_DIFFERENCE, (
        f"the reference gives {image} and {other} probabilities within {difference:.2e} of each other: it does "
        f"not depend on its input (weights {reference.weights})")


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
    check_informative(reference, image)

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
