"""The plugin's fixtures (registered by splitbed.pytest_plugin; documented in docs/SUITE.md).

    link             a netem Topology on the test's profile and backend (session-cached per profile)
    testbed          a running Testbed (remote + driven local node) on the test's model and profile, nodes
                     started once per model and session, the link switched live per profile
    capture          capture(topology) -> context manager: scapy captures on the ue and edge sides of the link
    metrics_records  the records this test's testbed runs returned (written to the results folder on failure)
    results_dir      this test's results folder (kept, and named in the failure message, when the test fails)
    reference        the test's model loaded in the test process with the nodes' weights (splitbed.plugin.reference)
    suite_case       the matrix case (model, partition, profile, carriage) of a test marked `suite(check)`

The model and profile of `testbed`, `link` and `reference` come from `suite_case` when the test is parametrised
by it, else from the first --model / --profile given, else mobilenet_v2 on 5g-embb.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from splitbed.plugin.matrix import DEFAULT_UE, SuiteCase
from splitbed.plugin.options import value

DEFAULT_MODEL = "mobilenet_v2"
DEFAULT_PROFILE = "5g-embb"
RESULTS_KEY = pytest.StashKey["TestResults"]()


@dataclass
class TestResults:
    """What a test leaves for its failure report: folder, records, and the testbed whose logs matter."""

    __test__ = False

    folder: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    bed: Any = None
    created: bool = False

    def ensure(self) -> Path:
        if not self.created:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            self.created = True
        return self.folder


def safe_name(nodeid: str) -> str:
    """A folder name for a test id: `tests/e2e/test_x.py::test_y[case]` -> `test_x.py-test_y-case`."""
    name = nodeid.split("/")[-1].replace("::", "-").replace("[", "-").rstrip("]")
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)[:200]


def test_results(request: pytest.FixtureRequest) -> TestResults:
    node = request.node
    if RESULTS_KEY not in node.stash:
        node.stash[RESULTS_KEY] = TestResults(_results_root(request.config) / safe_name(node.nodeid))
    return node.stash[RESULTS_KEY]


def _requested(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(model, profile, UE device) for this test: its suite_case, else the first --model / --profile /
    --ue-device, else the defaults."""
    if "suite_case" in request.fixturenames:
        case: SuiteCase = request.getfixturevalue("suite_case")
        return case.model, case.profile, case.ue_device
    models = value(request.config, "model") or [DEFAULT_MODEL]
    profiles = value(request.config, "profile") or [DEFAULT_PROFILE]
    devices = value(request.config, "ue_device") or [DEFAULT_UE]
    return models[0], profiles[0], devices[0]


@pytest.fixture(scope="session")
def splitbed_offline() -> Iterator[None]:
    """Nodes and references never look for weights online (SPLITBED_OFFLINE): `auto` weights resolve to the
    Keras cache's ImageNet file when present, else to random:0, identically in every process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPLITBED_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def splitbed_bed_pool(request: pytest.FixtureRequest, splitbed_offline: None) -> Iterator[Any]:
    from splitbed.plugin.beds import BedPool

    pool = BedPool(backend=value(request.config, "backend"), weights=value(request.config, "weights"),
                   transport=value(request.config, "transport"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def splitbed_reference_pool(request: pytest.FixtureRequest, splitbed_offline: None) -> Any:
    from splitbed.plugin.reference import ReferencePool

    return ReferencePool(value(request.config, "weights"))


@pytest.fixture
def results_dir(request: pytest.FixtureRequest) -> Path:
    """This test's results folder (results/<test id>/ under --results-dir): removed when the test passes
    (unless --keep-results), kept and named in the failure message when it fails."""
    return test_results(request).ensure()


@pytest.fixture
def metrics_records(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Every record (and action line) the test's testbed returned, in order."""
    return test_results(request).records


@pytest.fixture
def testbed(request: pytest.FixtureRequest, splitbed_bed_pool: Any, metrics_records: list[dict[str, Any]]) -> Any:
    """A running testbed (splitbed.plugin.beds.SuiteBed) on this test's model and link profile."""
    from splitbed.plugin.beds import SuiteBed
    from splitbed.pytest_plugin import requires

    requires("root_or_userns", "netns")
    model, profile, ue_device = _requested(request)
    bed = splitbed_bed_pool.get(model, profile, ue_device)
    test_results(request).bed = bed
    return SuiteBed(bed, metrics_records, splitbed_bed_pool, model, ue_device)


_topologies: dict[tuple[str, str], Any] = {}


@pytest.fixture(scope="session")
def splitbed_topologies() -> Iterator[dict[tuple[str, str], Any]]:
    try:
        yield _topologies
    finally:
        while _topologies:
            _, topology = _topologies.popitem()
            topology.close()


@pytest.fixture
def link(request: pytest.FixtureRequest, splitbed_topologies: dict[tuple[str, str], Any]) -> Any:
    """A netem Topology (ue, link, edge namespaces) on this test's profile and --backend; one per profile
    per session. Use `.popen(side, argv)` / `.run(side, argv)` to run programs on either side."""
    from netem.topology import Topology
    from splitbed.pytest_plugin import requires

    requires("root_or_userns", "netns")
    _, profile, _ = _requested(request)
    key = (profile, value(request.config, "backend"))
    if key not in splitbed_topologies:
        topology = Topology(profile, key[1])
        topology.start()
        splitbed_topologies[key] = topology
    return splitbed_topologies[key]


@dataclass
class BothSides:
    """The two captures of one `capture(...)` block: pcap paths and per-flow statistics per side."""

    ue: Any
    edge: Any

    @property
    def pcaps(self) -> dict[str, Path]:
        return {"ue": self.ue.pcap_path, "edge": self.edge.pcap_path}

    @property
    def complete(self) -> bool:
        return bool(self.ue.complete and self.edge.complete)

    def flows(self) -> dict[str, list[Any]]:
        return {"ue": self.ue.flows, "edge": self.edge.flows}


@pytest.fixture
def capture(request: pytest.FixtureRequest, results_dir: Path) -> Callable[..., Any]:
    """`with capture(topology_or_testbed) as both:` captures the ue and edge interfaces (scapy, in their
    namespaces) into <results_dir>/ue.pcap and edge.pcap; after the block: `both.pcaps`, `both.flows()`,
    `both.complete` (no kernel drops, not truncated)."""
    from splitbed.pytest_plugin import requires

    requires("scapy_capture")
    counter = iter(range(1, 1000))

    @contextmanager
    def start(target: Any, max_seconds: float = 600.0) -> Iterator[BothSides]:
        from netem.capture import Capture

        topology = getattr(target, "topology", target)
        n = next(counter)
        suffix = "" if n == 1 else f"-{n}"
        with Capture(topology, "edge", path=results_dir / f"edge{suffix}.pcap", max_seconds=max_seconds) as edge, \
                Capture(topology, "ue", path=results_dir / f"ue{suffix}.pcap", max_seconds=max_seconds) as ue:
            yield BothSides(ue, edge)

    return start


@pytest.fixture
def reference(request: pytest.FixtureRequest, splitbed_reference_pool: Any) -> Any:
    """The test's model run in the test process with the nodes' weights (splitbed.plugin.reference.Reference)."""
    model, _, _ = _requested(request)
    return splitbed_reference_pool.get(model)


def keep_on_failure(item: pytest.Item, report: pytest.TestReport) -> None:
    """On a failed test: write its records and node logs into its results folder and name it in the report."""
    results: TestResults | None = item.stash.get(RESULTS_KEY, None)
    if results is None:
        return
    folder = results.ensure() if results.records or results.created else None
    if folder is None:
        return
    import json

    with (folder / "records.jsonl").open("w") as handle:
        for record in results.records:
            handle.write(json.dumps(record, default=str) + "\n")
    if results.bed is not None:
        try:
            for side, text in results.bed.logs().items():
                (folder / f"{side}-node.log").write_text(text)
        except Exception as exc:  # a testbed torn down by the failure has no logs left: say so
            (folder / "node-logs-unavailable.txt").write_text(f"{exc}\n")
    kept = sorted(p.name for p in folder.iterdir())
    message = f"splitbed: pcaps, records and logs of this test kept in {folder} ({', '.join(kept)})"
    add_section = getattr(report.longrepr, "addsection", None)
    if callable(add_section):
        add_section("splitbed results", message)  # printed with the failure
    else:
        report.sections.append(("splitbed results", message))


def discard_on_success(item: pytest.Item, keep: bool) -> None:
    results: TestResults | None = item.stash.get(RESULTS_KEY, None)
    if results is not None and results.created and not keep and os.path.isdir(results.folder):
        shutil.rmtree(results.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def budget_table(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    """Budget rows (splitbed.plugin.budget.BudgetRow) collected over the session; written at its end to
    <results-dir>/budgets/budgets.md and budgets.csv for the report."""
    rows: list[Any] = []
    yield rows
    if rows:
        from splitbed.plugin.budget import write_table

        csv_path, md_path = write_table(rows, _results_root(request.config) / "budgets")
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\nsplitbed: budget table written to {md_path} and {csv_path}")


def _results_root(config: pytest.Config) -> Path:
    root = Path(value(config, "results_dir"))
    return root if root.is_absolute() else config.rootpath / root


@pytest.fixture(scope="session")
def wire_table(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    """Per-inference wire figures from captures (bytes on the wire, overhead ratio, capture vs app delivery
    time), written at the session's end to <results-dir>/capture/wire.csv."""
    rows: list[dict[str, Any]] = []
    yield rows
    if rows:
        import csv

        folder = _results_root(request.config) / "capture"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "wire.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\nsplitbed: wire figures written to {path}")
