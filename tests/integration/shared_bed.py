"""The real testbed that the scenario and sweep tests share (TensorFlow start-up and model builds cost most of a
minute on this machine, so they are paid once per session): namespaces, the userspace link on 5g-split-ai, a remote
node and a driven local node with MobileNetV2 and seeded random weights.

Registered once, by tests/integration/conftest.py: a fixture imported into two conftest files is two fixtures
with two testbeds (and without __init__.py files, "package" scope meant the session: both stayed up to the end).
A scenario run leaves the link at its last step; tests/integration/scenario/conftest.py puts the base profile
back after each of its tests, as the sweep tests do after changing it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from splitbed.pytest_plugin import requires

MODEL = "mobilenet_v2"
WEIGHTS = "random:0"
PROFILE = "5g-split-ai"


@pytest.fixture(scope="session")
def offline() -> Iterator[None]:
    """Nodes never look for weights online (SPLITBED_OFFLINE, read by splitbed.models.weights)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPLITBED_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def shared_bed(offline: None) -> Iterator[Any]:
    requires("root_or_userns", "netns")
    from splitbed.testbed import Testbed

    # The UE computes at this host's speed (device `host`): these packages' tests are tuned to the host's head
    # times (the adaptive drop's ue_slowdown, the advisor's predictions); device emulation has its own tests.
    with Testbed(PROFILE, backend="userspace", models=[MODEL], weights=WEIGHTS, ue_device="host") as bed:
        yield bed
