"""Every example a user can copy is run as printed: the shell blocks of README.md and docs/*.md, and the
`Examples:` blocks of every `--help` of both CLIs.

Each source's examples run in order in one scratch folder (so `netem graph link.log` finds the log the example
before it wrote), with `.venv` linked there, the CLIs on PATH, `results/sweep` holding a real sweep's results
(the shared sweep of this package) and the files an example names: a budgets file (from the docs) and an ONNX
model (the small residual graph of the ONNX unit tests).

How an example runs, by what it is (`plan`):
- it runs as printed, and must succeed (exit 0; the doctors may say 1: a missing must-have is their answer);
- an example that takes minutes to hours (a measuring sweep, the advisor, a scenario, the doctors, building
  VGG16) runs as printed with `--full` (slow); by default its arguments are parsed by the CLI itself (every
  option and value type checked) and a sweep runs with `--dry-run` (every name checked, the points listed); a
  sweep of more than MAX_REAL_POINTS points (the whole matrix: hours) is a dry run even with `--full`;
- a pytest example is collected (`--collect-only`: options checked, something selected), cwd the repository;
- an example another default test runs with closer checks (COVERED) is parsed by default, run as printed with
  `--full`;
- not run, with the reason (EXCLUDED): `make sweep` / `make test` (the Quickstart: test_project.py runs `make
  test`), the user-namespace wrapper and sysctl settings of docs/INSTALL.md (they change the machine; the
  wrapper itself is test_doctor_nonroot.py's), `docker run` (a whole suite in a container) and the Dask
  scheduler and worker of docs/DISTRIBUTED.md (they run until stopped; test_sweep_distributed.py runs them on
  loopback).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

import netem.cli
import splitbed.cli

pytestmark = [pytest.mark.root, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[3]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CLIS = {"splitbed": splitbed.cli, "netem": netem.cli}
EXCLUDED = {
    "make": "the Quickstart itself: tests/unit/test_project.py runs `make test`; `make sweep` is the main job",
    "sysctl": "changes the machine's kernel settings",
    "unshare": "the whole suite in a user namespace; tests/integration/test_doctor_nonroot.py runs this wrapper",
    "docker run": "the whole suite in a container (docs/INSTALL.md)",
    ".venv/bin/dask ": "a Dask scheduler or worker of a lab's machines, running until stopped: "
                       "test_sweep_distributed.py runs these commands on loopback",
}
#: Examples too long for the default run: parsed (and sweeps dry-run) by default, run as printed with --full.
LONG = re.compile(r"^(splitbed (sweep|advise|scenario run|doctor|partitions vgg16|partitions resnet50)|netem doctor"
                  r"|netem shell .*iperf3|splitbed partitions \S+ .*--onnx)")
#: Examples another default test runs, on the same inputs and with closer checks: parsed by default (run with --full).
COVERED = {
    "splitbed report results/sweep --out report-mine --budgets my-budgets.toml":
        "test_report_user_budgets.py builds this report from the shared sweep with docs/REPORT.md's budgets file and "
        "checks that it cites the budget",
    "netem shell --rate 20 --log link.log -- ping -c 20 -i 0.05 198.18.0.2":
        "test_netem_cli.py's per-packet log test writes a log through a 20 Mbit/s quick link and checks its packets",
    "netem graph link.log -o link.png": "test_netem_cli.py's per-packet log test draws its log and checks the PNG",
}
MAX_REAL_POINTS = 12  # with --full, a documented sweep of more points runs as a dry run only (hours otherwise)
NEVER_FOR_REAL = re.compile(r"splitbed sweep .*--full(?! --estimate)|splitbed sweep --full$")  # hours


@dataclass(frozen=True)
class Example:
    source: str
    command: str


def doc_examples(path: Path) -> list[Example]:
    text = path.read_text()
    found = []
    for block in re.finditer(r"^```(?:sh|bash|shell|console)\n(.*?)^```", text, flags=re.S | re.M):
        lines = block.group(1).replace("\\\n", " ").splitlines()
        found += [Example(path.name, line.strip()) for line in lines if line.strip() and not line.startswith("#")]
    return found


def help_examples() -> list[Example]:
    found = []
    for prog, module in CLIS.items():
        def walk(command: Any, path: list[str], module: Any = module) -> None:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert module.main([*path[1:], "--help"]) == 0
            block = out.getvalue().split("Examples:", 1)[1] if "Examples:" in out.getvalue() else ""
            for line in block.splitlines()[1:]:
                if not line.strip():
                    break
                found.append(Example(f"{' '.join(path)} --help", line.strip()))
            for name, sub in (getattr(command, "commands", None) or {}).items():
                walk(sub, [*path, name])

        walk(typer.main.get_command(module.app), [prog])
    return found


def _sources() -> dict[str, list[Example]]:
    by_source: dict[str, list[Example]] = {}
    for example in [e for path in DOCS for e in doc_examples(path)] + help_examples():
        by_source.setdefault(example.source, []).append(example)
    return by_source


SOURCES = _sources()


def excluded(command: str) -> str | None:
    return next((why for start, why in EXCLUDED.items() if command.startswith(start)), None)


def bare(command: str) -> str:
    """The command without its comment and without the `.venv/bin/` prefix."""
    words = shlex.split(command, comments=True)
    if words and words[0].startswith(".venv/bin/"):
        words[0] = words[0].removeprefix(".venv/bin/")
    return shlex.join(words)


def parse_only(command: str) -> None:
    """The CLI's own parser on the example's arguments: unknown options, bad types, missing values fail here."""
    words = shlex.split(bare(command))
    prog, args = words[0], words[1:]
    group: Any = typer.main.get_command(CLIS[prog].app)
    ctx = group.make_context(prog, list(args))
    while getattr(group, "commands", None) is not None:
        remaining = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        name, group, rest = group.resolve_command(ctx, remaining)
        ctx = group.make_context(name, list(rest), parent=ctx)


def plan(command: str, full: bool) -> tuple[str, str]:
    """(how, shell command): how is `run`, `parse` or `collect`."""
    text = bare(command)
    if " -m pytest" in command or text.startswith("pytest "):
        return "collect", f"{command.split('#')[0].strip()} --collect-only -q"
    if text in COVERED and not full:
        return "parse", command
    if LONG.match(text) and not (full and not NEVER_FOR_REAL.search(text)):
        if text.startswith("splitbed sweep") and "--estimate" not in text:
            return "run", f"{command.split('#')[0].strip()} --dry-run"
        return "parse", command
    return "run", command


def _needs_saved_benchmarks(source: str) -> bool:
    return any("pytest-benchmark" in e.command or ".benchmarks" in e.command for e in SOURCES.get(source, []))


@pytest.fixture
def scratch(tmp_path: Path, shared_sweep: Path, request: pytest.FixtureRequest) -> Path:
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    (tmp_path / "results").mkdir()
    shutil.copytree(shared_sweep, tmp_path / "results" / "sweep")
    report = (REPO / "docs" / "REPORT.md").read_text()
    (tmp_path / "my-budgets.toml").write_text(re.search(r"```toml\n(.*?)```", report, flags=re.S).group(1))  # type: ignore[union-attr]
    from tests.unit.models.test_models_onnx_graph import residual_model

    (tmp_path / "model.onnx").write_bytes(residual_model().SerializeToString())  # "your ONNX file"
    if not _needs_saved_benchmarks(request.node.callspec.params["source"]):
        return tmp_path  # two pytest runs cost seconds: only for the sources with `pytest-benchmark compare`
    saved = request.getfixturevalue("saved_benchmarks")
    for name in ("bench", ".benchmarks"):
        shutil.copytree(saved / name, tmp_path / name)
    return tmp_path


@pytest.fixture(scope="module")
def saved_benchmarks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two saved runs (0001, 0002) of a tiny benchmark for the `pytest-benchmark compare 0001 0002` examples:
    made once, copied into the scratch folder of each source that needs them."""
    folder = tmp_path_factory.mktemp("saved-benchmarks")
    benchmarks = folder / "bench"
    benchmarks.mkdir()
    (benchmarks / "test_tiny.py").write_text("def test_sum(benchmark):\n    benchmark(sum, range(100))\n")
    for _ in range(2):
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-autosave",
                        "--benchmark-storage", str(folder / ".benchmarks"), str(benchmarks)], cwd=folder,
                       capture_output=True, check=True, timeout=300)
    return folder


#: Commands (as run, in a scratch folder) that already succeeded in this session: the `--help` Examples repeat
#: the docs' (`netem shell ... ping`), and running the same command twice checks nothing new.
PASSED: set[str] = set()


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_documented_example_works_as_printed(source: str, scratch: Path, request: pytest.FixtureRequest) -> None:
    full = bool(request.config.getoption("splitbed_full"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               SPLITBED_OFFLINE="1", COLUMNS="80")
    problems = []
    for example in SOURCES[source]:
        if excluded(example.command):
            continue
        how, command = plan(example.command, full)
        if how == "parse":
            try:
                parse_only(command)
            except Exception as exc:  # noqa: BLE001 - every example's failure is reported together
                problems.append(f"{example.command}: does not parse: {exc}")
            continue
        cwd = REPO if how == "collect" else scratch
        if full and re.match(r"splitbed sweep\b(?!.*--(dry-run|estimate))", bare(command)):
            listed = subprocess.run(["bash", "-c", f"{command.split('#')[0].strip()} --dry-run"], cwd=cwd, env=env,
                                    capture_output=True, text=True, timeout=600)
            count = re.search(r"^(\d+) points", listed.stdout, flags=re.M)
            if count is None or int(count.group(1)) > MAX_REAL_POINTS:  # hours: its dry run is the check
                command = f"{command.split('#')[0].strip()} --dry-run"
        key = f"{how} {bare(command)}"
        if key in PASSED:
            continue
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=1500)
        allowed = {0, 1} if re.search(r"\bdoctor\b", command) else {0}
        if done.returncode not in allowed:
            problems.append(f"{example.command}: exit {done.returncode}: {(done.stderr or done.stdout)[-600:]}")
        elif how == "collect" and re.search(r"\bno tests (collected|ran)\b|\b0 tests collected", done.stdout):
            problems.append(f"{example.command}: selects no test: {done.stdout[-300:]}")
        else:
            PASSED.add(key)
    assert not problems, "\n".join(problems)


def test_the_examples_are_found_and_the_exclusions_are_few() -> None:
    every = [e for examples in SOURCES.values() for e in examples]
    assert len(every) >= 40
    assert {e.source for e in every} >= {"README.md", "SWEEP.md", "REPORT.md", "splitbed --help", "netem --help",
                                          "netem shell --help", "NETEM.md"}
    skipped = [e.command for e in every if excluded(e.command)]
    assert len(skipped) <= 12, skipped
