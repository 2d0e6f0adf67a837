"""pytest plugin (entry point `splitbed`): options, markers and fixtures for split-inference test suites.

Options: --model, --profile, --backend narrow the parametrised matrix; --full runs slow tests and the whole
seed matrix (default: a representative subset).

Machine capabilities: `requires("netns", "scapy_capture")` (or `@pytest.mark.requires(...)`) runs the same probes
as `splitbed doctor` (once per session) and skips with the probe's reason when one is missing; on CI (CI=true) a
missing must-have fails the test instead. The `root` and `docker` markers are shorthands for the same probes.
"""

from __future__ import annotations

import threading

import pytest

from netem.doctor import Probe, decide, is_ci

# Probes are real (namespaces, captures, TensorFlow import): run each once per session.
_probe_results: dict[str, Probe] = {}
_probe_lock = threading.Lock()
MARKER_PROBES = {"root": ("root_or_userns", "netns"), "docker": ("docker",)}


def machine_probe(name: str) -> Probe:
    """The doctor probe `name`, run at most once per session."""
    with _probe_lock:
        if name not in _probe_results:
            from splitbed.doctor import run_probe

            _probe_results[name] = run_probe(name)
        return _probe_results[name]


def requires(*names: str) -> None:
    """Skip the calling test unless every named probe passes; fail instead on CI when a must-have is missing."""
    ci = is_ci()
    for name in names:
        probe = machine_probe(name)
        decision = decide(probe, ci)
        if decision == "fail":
            pytest.fail(f"must-have {name!r} missing on CI: {probe.detail}. Fix: {probe.fix}", pytrace=False)
        if decision == "skip":
            kind = "must-have" if probe.must_have else "optional"
            pytest.skip(f"{kind} {name!r} missing: {probe.detail}" + (f" (fix: {probe.fix})" if probe.fix else ""))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    names: list[str] = []
    for marker in item.iter_markers(name="requires"):
        names.extend(marker.args)
    for marker_name, probes in MARKER_PROBES.items():
        if item.get_closest_marker(marker_name) is not None:
            names.extend(probes)
    if names:
        requires(*dict.fromkeys(names))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _probe_results:
        return
    terminalreporter.section("splitbed doctor probes used by this run")
    for probe in _probe_results.values():
        state = "yes" if probe.ok else ("MISSING (must-have)" if probe.must_have else "no")
        terminalreporter.write_line(f"{probe.name}: {state}: {probe.detail}")


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
        "requires(*probes): needs these `splitbed doctor` probes (skip locally, fail on CI for must-haves)",
    ):
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --full")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
