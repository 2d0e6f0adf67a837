"""pytest plugin (entry point `splitbed`): options, markers and fixtures for split-inference test suites.

Options (splitbed/plugin/options.py; short aliases in brackets): --splitbed-model [--model] and
--splitbed-profile [--link-profile] narrow the parametrised matrix (an unknown name is a usage error naming the
valid ones; a filter that selects nothing by default but would with --full says so); --splitbed-ue-device
[--ue-device] picks the UE device profile(s) the testbeds emulate (default phone-midrange, docs/DEVICES.md);
--splitbed-backend [--backend]; --splitbed-full [--full] runs slow tests and the whole matrix (default: a
representative subset); --splitbed-weights [--weights] picks the nodes' weights; --splitbed-results-dir
[--results-dir] is where a failing network test leaves its pcaps, records and node logs (named in the failure
message).

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
from typing import Any

import pytest

from netem.doctor import Probe, decide, is_ci
from splitbed.plugin import options
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
MARKER_PROBES = {"root": ("root_or_userns", "netns"), "docker": ("docker", "docker_cgroup"),
                 "realtime": ("realtime",)}


def machine_probe(name: str) -> Probe:
    """The doctor probe `name`, run at most once per session. The first test that needs `docker` starts an
    engine when none answers (root, dockerd installed): set-up no longer does, so a sweep on processes never
    starts a daemon; the one started here is stopped at the end of the session."""
    with _probe_lock:
        if name not in _probe_results:
            from splitbed.doctor import run_probe

            if name == "docker":
                _start_docker_for_tests()
            _probe_results[name] = run_probe(name)
        return _probe_results[name]


_started_engines: list[object] = []


def _start_docker_for_tests() -> None:
    import os
    import shutil

    from splitbed.runtime.dockerd import engine_answers, start_engine
    from splitbed.runtime.errors import EngineUnavailableError

    if os.geteuid() != 0 or shutil.which("dockerd") is None or engine_answers():
        return  # the probe then says what is missing (skip locally, fail on CI)
    try:
        _started_engines.append(start_engine("the docker tests"))
    except EngineUnavailableError:
        pass  # the probe reports the engine missing, with its reason


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
    for engine in _started_engines:
        terminalreporter.write_line(f"splitbed: stopping the Docker engine the docker tests started (pid "
                                    f"{getattr(engine, 'pid', '?')})")
    if not _probe_results:
        return
    terminalreporter.section("splitbed doctor probes used by this run")
    for probe in _probe_results.values():
        state = "yes" if probe.ok else ("MISSING (must-have)" if probe.must_have else "no")
        terminalreporter.write_line(f"{probe.name}: {state}: {probe.detail}")


def pytest_unconfigure(config: pytest.Config) -> None:
    while _started_engines:
        engine = _started_engines.pop()
        engine.stop()  # type: ignore[attr-defined]


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "slow: long-running; deselected unless --full",
        "root: needs root (network namespaces, qdiscs)",
        "docker: needs a running Docker engine that can start containers (a writable cgroup hierarchy)",
        "realtime: needs SCHED_FIFO (chrt -f) for the link and the measuring tools",
        "requires(*probes): needs these `splitbed doctor` probes (skip locally, fail on CI for must-haves)",
        "suite(check): parametrised by `suite_case` from splitbed/data/suite.toml (correctness, budgets, capture, "
        "bench, lifetime)",
    ):
        config.addinivalue_line("markers", line)
    if not config.getoption("help", False):
        options.check(config)
    _size_tensorflow_like_the_ue_node()


def _size_tensorflow_like_the_ue_node() -> None:
    """The references that tests compare node tensors with bit for bit (splitbed.plugin.reference) are computed in
    this process: give its TensorFlow the thread pools of a UE node pinned by the default CPU plan."""
    import warnings

    from splitbed.models import tfboot
    from splitbed.runtime.cpus import available_cpus, default_plan

    threads = len(default_plan().ue) or len(available_cpus())
    try:
        tfboot.use_threads(threads)
    except tfboot.ThreadsError as exc:
        warnings.warn(f"{exc}; reference tensors may differ from the nodes' in the last bits on this CPU",
                      stacklevel=2)


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
    config = metafunc.config
    models, profiles, full = options.value(config, "model"), options.value(config, "profile"), options.value(
        config, "full")
    devices = options.value(config, "ue_device")
    try:
        if check == "lifetime":
            cases = matrix.lifetime_cases(models=models, profiles=profiles, ue_devices=devices)
            wider: list[matrix.SuiteCase] = []
        else:
            cases = matrix.cases(check, full=full, models=models, profiles=profiles, ue_devices=devices)
            wider = [] if full else matrix.cases(check, full=True, models=models, profiles=profiles,
                                                 ue_devices=devices)
    except matrix.MatrixError as exc:
        raise pytest.UsageError(str(exc)) from None
    _matrices.setdefault(config, {})[metafunc.definition.nodeid] = (check, wider if not full else cases)
    if not cases:
        reason = _empty_reason(check, models, profiles, len(wider))
        _notes.setdefault(config, []).append(f"{metafunc.definition.nodeid}: {reason}")
        metafunc.parametrize("suite_case", [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
                             ids=["no-case-selected"])
        return
    metafunc.parametrize("suite_case", cases, ids=[case.id for case in cases])


# Per session (keyed by config): the full matrix of each suite test function, and notes on empty selections.
_matrices: dict[pytest.Config, dict[str, tuple[str, list[Any]]]] = {}
_notes: dict[pytest.Config, list[str]] = {}


def _empty_reason(check: str, models: list[str], profiles: list[str], with_full: int) -> str:
    chosen = " ".join([*(f"{options.flag('model')} {m}" for m in models),
                       *(f"{options.flag('profile')} {p}" for p in profiles)]) or "the default selection"
    if with_full:
        return (f"{chosen} selects no case of the default {check} matrix; {with_full} case(s) of the full matrix "
                f"match: add {options.flag('full')}")
    return f"{chosen} selects no case of the {check} matrix (splitbed/data/suite.toml), not even with --full"


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """Say when a filter (--splitbed-model/-profile, or -k) selected no suite case by default but would with
    --full: otherwise a run can pass having measured nothing."""
    lines = [f"splitbed: {note}" for note in _notes.pop(config, [])]
    matrices = _matrices.pop(config, {})
    keyword = config.getoption("keyword", "")
    if keyword and matrices and not options.value(config, "full") and not any(
            _suite_case(item) is not None for item in items):
        matching = _keyword_matches(keyword, matrices)
        if matching:
            lines.append(f"splitbed: -k {keyword!r} selects no case of the default matrices; {len(matching)} "
                         f"case(s) of the full matrix match (e.g. {matching[0]}): add {options.flag('full')}")
    return lines


class _Names:
    """pytest's -k matcher protocol over a fixed list of names (substring, case-insensitive, as pytest)."""

    def __init__(self, names: list[str]) -> None:
        self.names = [n.lower() for n in names]

    def __call__(self, sub: str, /, **kwargs: str | int | bool | None) -> bool:
        return any(sub.lower() in name for name in self.names)


def _keyword_matches(keyword: str, matrices: dict[str, tuple[str, list[Any]]]) -> list[str]:
    """Ids `-k keyword` would select among the full matrix's cases (pytest's own expression matcher, on the
    names an item would carry: its module, function and parametrised name)."""
    try:
        from _pytest.mark.expression import Expression
    except ImportError:  # pragma: no cover - pytest moved it: no hint rather than a wrong one
        return []
    try:
        expression = Expression.compile(keyword)
    except Exception:  # noqa: BLE001 - pytest itself reports a bad -k expression
        return []
    found = []
    for nodeid, (_check, cases) in matrices.items():
        module, _, function = nodeid.rpartition("::")
        for case in cases:
            name = f"{function}[{getattr(case, 'id', '')}]"
            if expression.evaluate(_Names([*module.split("/"), function, name])):
                found.append(f"{nodeid}[{getattr(case, 'id', '')}]")
    return found


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
        discard_on_success(item, options.value(item.config, "keep_results"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _group_suite_cases(items)
    if options.value(config, "full"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --full")
    for item in items:
        if item.get_closest_marker("slow") is not None:  # a marker, not an id that says "slow"
            item.add_marker(skip_slow)
