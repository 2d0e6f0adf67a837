"""pytest plugin (entry point `splitbed`): options, markers and fixtures for split-inference test suites.

Options: --model, --profile, --backend narrow the parametrised matrix; --full runs slow tests and the whole
seed matrix (default: a representative subset).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("splitbed")
    group.addoption("--model", action="append", default=[], help="only these models (repeatable)")
    group.addoption("--profile", action="append", default=[], help="only these link profiles (repeatable)")
    group.addoption("--backend", default="auto", choices=["auto", "kernel", "userspace"],
                    help="link emulation backend")
    group.addoption("--full", action="store_true", default=False,
                    help="run slow tests and the full model x partition x profile matrix")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "slow: long-running; deselected unless --full",
        "root: needs root (network namespaces, qdiscs)",
        "docker: needs a running Docker engine",
    ):
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --full")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
