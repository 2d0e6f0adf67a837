"""Fixtures for the node tests (helpers in nodes_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nodes_harness import TEST_SERVER_ARGS, RemoteProcess, start_remote


@pytest.fixture(scope="session")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteProcess]:
    """One remote node for the session's node tests (short timeouts); must shut down cleanly at the end."""
    server = start_remote(tmp_path_factory.mktemp("remote"), *TEST_SERVER_ARGS)
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, f"remote node exited {code} on SIGTERM: {server.log()[-3000:]}"
