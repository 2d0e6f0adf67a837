"""Fixtures for the node-runtime tests: the node image (built once per machine, cached), a live topology, and
a Docker client.

Every test here needs root (namespaces) and a Docker engine: the `root` and `docker` markers skip them with
the doctor probe's reason, or fail them on CI (CI=true) where both are must-haves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from netem.topology import Topology


@pytest.fixture(scope="session")
def node_image() -> Any:
    """The node image for this environment (cold build: a few minutes once per machine; then cached)."""
    from splitbed.runtime.image import ensure_image

    return ensure_image()


@pytest.fixture
def topology() -> Iterator[Topology]:
    with Topology("ideal") as topo:
        yield topo


@pytest.fixture
def docker_client() -> Iterator[Any]:
    from splitbed.runtime.engine import connect

    client = connect()
    try:
        yield client
    finally:
        client.close()
