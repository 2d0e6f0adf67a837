"""The scenario tests share one real testbed with the sweep tests (tests/integration/shared_bed.py). Each scenario
run puts the link on its base profile first and leaves it at its last step; `base_link_after` puts the shared
base profile back after each test, so the sweep tests find it as they expect."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.shared_bed import MODEL, PROFILE, WEIGHTS


@pytest.fixture(autouse=True)
def base_link_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "shared_bed" in request.fixturenames:  # the test or one of its fixtures ran scenarios on the shared testbed
        bed = request.getfixturevalue("shared_bed")
        if bed.profile.name != PROFILE:
            bed.update_link(PROFILE)


@pytest.fixture(scope="session")
def reference(offline: None) -> Any:
    """The whole model with the nodes' weights, in the test process: what every answer must equal."""
    from splitbed.plugin.reference import Reference

    return Reference(MODEL, WEIGHTS)


def scenario_table(**parts: Any) -> dict[str, Any]:
    """A scenario table on the shared testbed's model and weights; `parts` override top-level keys."""
    table: dict[str, Any] = {"name": "test", "description": "test scenario", "profile": PROFILE,
                             "backend": "userspace", "ue_device": "host",  # the shared testbed's UE
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
