"""One real testbed shared by the scenario tests (TensorFlow start-up and model builds cost most of a minute on
this machine): namespaces, the userspace link on 5g-split-ai, a remote node and a driven local node with
MobileNetV2 and seeded random weights. Each scenario run puts the link back to its base profile first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from splitbed.pytest_plugin import requires

MODEL = "mobilenet_v2"
WEIGHTS = "random:0"
PROFILE = "5g-split-ai"


@pytest.fixture(scope="package")
def offline() -> Iterator[None]:
    """Nodes never look for weights online (SPLITBED_OFFLINE, read by splitbed.models.weights)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPLITBED_OFFLINE", "1")
        yield


@pytest.fixture(scope="package")
def scenario_bed(offline: None) -> Iterator[Any]:
    requires("root_or_userns", "netns")
    from splitbed.testbed import Testbed

    with Testbed(PROFILE, backend="userspace", models=[MODEL], weights=WEIGHTS) as bed:
        yield bed


@pytest.fixture(scope="package")
def reference(offline: None) -> Any:
    """The whole model with the nodes' weights, in the test process: what every answer must equal."""
    from splitbed.plugin.reference import Reference

    return Reference(MODEL, WEIGHTS)


def scenario_table(**parts: Any) -> dict[str, Any]:
    """A scenario table on the shared testbed's model and weights; `parts` override top-level keys."""
    table: dict[str, Any] = {"name": "test", "description": "test scenario", "profile": PROFILE,
                             "backend": "userspace",
                             "workload": {"model": MODEL, "weights": WEIGHTS, "gap_ms": 100, "deadline_s": 10}}
    for key, value in parts.items():
        if key == "workload":
            table["workload"] = dict(table["workload"], **value)
        else:
            table[key] = value
    return table


def assert_correct(record: dict[str, Any], expected: Any, tolerance: float = 1e-5) -> None:
    """The record's predictions are the unsplit model's: each reported class has the reference probability,
    best first, and the top-1 class is the reference's unless its top two are tied within the tolerance."""
    import numpy as np

    predictions = record["predictions"]
    assert predictions, f"inference {record['scenario']['index']} has no predictions"
    for p in predictions:
        assert abs(expected[p["class_index"]] - p["score"]) <= tolerance, (
            f"inference {record['scenario']['index']} ({record['partition_name']}): class {p['class_index']} "
            f"scored {p['score']:.8f}, unsplit model {expected[p['class_index']]:.8f}")
    ranked = np.sort(expected)[::-1]
    assert abs(predictions[0]["score"] - ranked[0]) <= tolerance
    if ranked[0] - ranked[1] > tolerance:
        assert predictions[0]["class_index"] == int(np.argmax(expected))
