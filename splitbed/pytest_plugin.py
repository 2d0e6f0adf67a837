"""pytest plugin (entry point `splitbed`): options, markers and fixtures for split-inference test suites.

Options: --model, --profile, --backend narrow the parametrised matrix; --ue-device picks the UE device profile(s)
the testbeds emulate (default phone-midrange, docs/DEVICES.md); --full runs slow tests and the whole
seed matrix (default: a representative subset); --weights picks the nodes' weights; --results-dir is where a
failing network test leaves its pcaps, records and node logs (named in the failure message).

Fixtures (splitbed/plugin/fixtures.py, docs/SUITE.md): link, testbed, capture, metrics_records, results_dir,
reference, budget_table, wire_table, and `suite_case` for tests marked `@pytest.mark.suite("<check>")`, parametrised from
splitbed/data/suite.toml with ids like `vgg16-block3_pool-5g-embb-phone-midrange-tlv-zstd`.

Machine capabilities: `requires("netns", "scapy_capture")` (or `@pytest.mark.requires(...)`) runs the same probes
as `splitbed doctor` (once per session) and skips with the probe's reason when one is missing; on CI (CI=true) a
missing must-have fails the test instead. The `root` and `docker` markers are shorthands for the same probes.
"""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from netem.doctor import Probe, decide, is_ci
from splitbed.plugin.fixtures import (  # noqa: F401  (registered as this plugin's fixtures)
    budget_table,
    capture,
    discard_on_success,
    keep_on_failure,
    link,
    metrics_records,
    reference,
    results_dir,
    splitbed_bed_pool,
    splitbed_offline,
    splitbed_reference_pool,
    splitbed_topologies,
    testbed,
    wire_table,
)

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
    group.addoption("--ue-device", action="append", default=[],
                    help="UE device profile(s) the suite's testbeds emulate (repeatable; built-in names, "
                         "`splitbed devices`; default phone-midrange; host = no emulation)")
    group.addoption("--full", action="store_true", default=False,
                    help="run slow tests and the full model x partition x profile matrix")
    group.addoption("--weights", default="auto",
                    help="node weights: auto (Keras cache's ImageNet file, else random:0), imagenet, random:SEED, "
                         "or a weights file")
    group.addoption("--results-dir", default="results/suite",
                    help="where failing network tests keep pcaps, records and logs (and the budget table goes)")
    group.addoption("--keep-results", action="store_true", default=False,
                    help="keep every test's results folder, also when it passes")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "slow: long-running; deselected unless --full",
        "root: needs root (network namespaces, qdiscs)",
        "docker: needs a running Docker engine",
        "requires(*probes): needs these `splitbed doctor` probes (skip locally, fail on CI for must-haves)",
        "suite(check): parametrised by `suite_case` from splitbed/data/suite.toml (correctness, budgets, capture, "
        "bench, lifetime)",
    ):
        config.addinivalue_line("markers", line)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise `suite_case` from the check's matrix (default, or default + full with --full)."""
    if "suite_case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("suite")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: a test taking `suite_case` needs "
                                "@pytest.mark.suite(\"<check>\")")
    from splitbed.plugin import matrix

    check = marker.args[0]
    options = metafunc.config.getoption
    try:
        if check == "lifetime":
            cases = matrix.lifetime_cases(models=options("--model"), profiles=options("--profile"),
                                          ue_devices=options("--ue-device"))
        else:
            cases = matrix.cases(check, full=options("--full"), models=options("--model"),
                                 profiles=options("--profile"), ue_devices=options("--ue-device"))
    except matrix.MatrixError as exc:
        raise pytest.UsageError(str(exc)) from None
    metafunc.parametrize("suite_case", cases, ids=[case.id for case in cases])


def _suite_case(item: pytest.Item) -> object | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("suite_case") if callspec is not None else None


def _group_suite_cases(items: list[pytest.Item]) -> None:
    """Within each module, suite cases run grouped by model, then profile (one testbed per model, few link
    changes); they move only among the slots suite cases already hold, so other tests keep their places."""
    slots: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if _suite_case(item) is not None:
            slots.setdefault(item.nodeid.split("::")[0], []).append(index)
    for indices in slots.values():
        group = [items[i] for i in indices]
        group.sort(key=lambda item: (getattr(_suite_case(item), "ue_device", ""),
                                     getattr(_suite_case(item), "model", ""),
                                     getattr(_suite_case(item), "profile", "")))
        for index, item in zip(indices, group, strict=True):
            items[index] = item


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed and report.when in ("setup", "call"):
        keep_on_failure(item, report)
    elif report.when == "call" and report.passed:
        item.stash[_PASSED_KEY] = True
    return report


_PASSED_KEY = pytest.StashKey[bool]()


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if item.stash.get(_PASSED_KEY, False):
        discard_on_success(item, item.config.getoption("--keep-results"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _group_suite_cases(items)
    if config.getoption("--full"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --full")
    for item in items:
        if item.get_closest_marker("slow") is not None:  # a marker, not an id that says "slow"
            item.add_marker(skip_slow)
