"""The project's own promises, checked on the tree as it is: README quickstart == CI command, `make test` fails
when no test ran, bounded dependencies, ruff-clean, nothing unsafe (pickle/eval/exec, shelling out to ip/tc,
blanket namespace deletion) in library code."""

from __future__ import annotations

import ast
import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
LIBRARY_DIRS = [REPO / "netem", REPO / "splitbed"]
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}


def quickstart_commands() -> list[str]:
    """The shell commands in the README's Quickstart code block."""
    text = (REPO / "README.md").read_text()
    section = re.search(r"^## Quickstart\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert section, "README.md has no '## Quickstart' section"
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", section.group(1), flags=re.S)
    assert block, "the Quickstart section has no code block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def ci_commands() -> list[str]:
    """What .ci/run executes, minus shell plumbing (shebang, comments, set, cd, exports)."""
    plumbing = ("#", "set ", "cd ", "export ")
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith(plumbing)]


def test_readme_quickstart_is_exactly_two_commands_and_ci_runs_the_second() -> None:
    commands = quickstart_commands()
    assert commands == ["make sweep", "make test"], commands
    assert ci_commands() == [commands[1]]


def _make_test(tmp_path: Path, pytest_args: str) -> subprocess.CompletedProcess[str]:
    """`make test` for real, with setup treated as done (-o setup) and this interpreter's bin as VENV."""
    make = shutil.which("make")
    assert make, "make is needed by the README's commands"
    return subprocess.run(
        [make, "--no-print-directory", "-o", "setup", "test", f"VENV={Path(sys.executable).parent}",
         f"PYTEST_ARGS=-p no:cacheprovider -q {pytest_args}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def test_make_test_fails_when_pytest_collects_nothing_and_passes_codes_through(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = _make_test(tmp_path, str(empty))
    assert nothing.returncode != 0, nothing.stdout
    assert "collected no tests (exit 5)" in nothing.stderr

    passing = tmp_path / "passing"
    passing.mkdir()
    (passing / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    assert _make_test(tmp_path, str(passing)).returncode == 0

    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "test_bad.py").write_text("def test_bad():\n    assert False\n")
    (failing / "test_skip.py").write_text("import pytest\n\ndef test_skipped():\n    pytest.skip('reason')\n")
    failed = _make_test(tmp_path, f"-c {REPO / 'pyproject.toml'} --rootdir {failing} {failing}")  # our addopts
    assert failed.returncode != 0 and "1 failed" in failed.stdout
    assert "pytest exit status 1" in failed.stderr
    # the short summary names failures before skips, so that a log cut short still shows them
    assert failed.stdout.index("FAILED ") < failed.stdout.index("SKIPPED ")

    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "test_die.py").write_text("import os, signal\n\ndef test_die():\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    died = _make_test(tmp_path, str(killed))
    assert died.returncode != 0 and "pytest was killed by signal 9" in died.stderr


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_dependency_has_an_upper_bound() -> None:
    project = _pyproject()["project"]
    specs = [*project["dependencies"], *(d for deps in project["optional-dependencies"].values() for d in deps)]
    unbounded = [s for s in specs
                 if not any(c.operator in {"<", "<=", "==", "~=", "==="} for c in Requirement(s).specifier)]
    assert not unbounded, f"add an upper bound to: {unbounded}"


def test_distribution_declares_both_console_scripts_and_the_pytest_plugin() -> None:
    project = _pyproject()["project"]
    assert project["scripts"] == {"splitbed": "splitbed.cli:main", "netem": "netem.cli:main"}
    assert project["entry-points"]["pytest11"] == {"splitbed": "splitbed.pytest_plugin"}
    names = {r.name for r in map(Requirement, project["dependencies"])}
    assert {"tensorflow-cpu", "numpy", "pyroute2", "scapy", "pytest", "pytest-benchmark", "docker", "zstandard",
            "lz4", "ml-dtypes"} <= names


def _tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "tox.ini")
    return parser


def lint_paths() -> list[str]:
    """The paths `tox -e lint` checks (the same as `make lint`)."""
    command = shlex.split(_tox()["testenv:lint"]["commands"].strip())
    assert command[:2] == ["ruff", "check"]
    return command[2:]


def test_tox_has_the_three_envs_and_lint_matches_make_and_pyproject() -> None:
    tox = _tox()
    assert {"testenv:tests", "testenv:lint", "testenv:type"} <= set(tox.sections())
    makefile = (REPO / "Makefile").read_text()
    assert f"ruff check {' '.join(lint_paths())}" in makefile
    dev = {Requirement(d).name: str(Requirement(d).specifier) for d in _pyproject()["project"]["optional-dependencies"]["dev"]}
    assert str(Requirement(tox["testenv:lint"]["deps"].strip()).specifier) == dev["ruff"]
    assert "mypy" in tox["testenv:type"]["commands"]


def test_ruff_passes_on_the_tree() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip(f"ruff is not installed next to {sys.executable} (install the dev extra)")
    done = subprocess.run([str(ruff), "check", "--no-cache", *lint_paths()], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _library_modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), filename=str(path)))
            for folder in LIBRARY_DIRS for path in sorted(folder.rglob("*.py"))]


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def test_library_code_never_unpickles_evals_or_execs() -> None:
    findings = []
    for path, tree in _library_modules():
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                findings += [f"{where}:{node.lineno} import {a.name}" for a in node.names
                             if a.name.split(".")[0] in UNSAFE_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
                findings.append(f"{where}:{node.lineno} from {node.module} import")
            elif isinstance(node, ast.Call):
                if _call_name(node) in {"eval", "exec", "__import__"}:
                    findings.append(f"{where}:{node.lineno} {_call_name(node)}()")
                for kw in node.keywords:
                    if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        findings.append(f"{where}:{node.lineno} allow_pickle")
    assert not findings, findings


def test_library_code_uses_pyroute2_not_ip_or_tc_and_never_a_shell() -> None:
    findings = []
    for path, tree in _library_modules():
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            if name in {"os.system", "os.popen"}:
                findings.append(f"{where}:{node.lineno} {name}")
            if any(kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False)
                   for kw in node.keywords):
                findings.append(f"{where}:{node.lineno} shell=True")
            if name.split(".")[-1] in SUBPROCESS_CALLS and node.args and isinstance(node.args[0], ast.List):
                first = node.args[0].elts[0] if node.args[0].elts else None
                if isinstance(first, ast.Constant) and Path(str(first.value)).name in {"ip", "tc"}:
                    findings.append(f"{where}:{node.lineno} runs {first.value}")
    assert not findings, findings


def test_nothing_deletes_namespaces_or_processes_it_did_not_create() -> None:
    forbidden = [re.compile(p) for p in (r"ip\s+-all\s+netns\s+del", r"\bpkill\s+-f\b", r"\bkillall\b")]
    files = [p for folder in ("netem", "splitbed", "tests", "scripts", ".ci") for p in (REPO / folder).rglob("*")
             if p.is_file() and p.suffix in {".py", ".sh", ""}]
    files.append(REPO / "Makefile")
    this_file = Path(__file__).resolve()
    hits = [f"{p.relative_to(REPO)}: {rx.pattern}" for p in files if p.resolve() != this_file
            for rx in forbidden if rx.search(p.read_text(errors="replace"))]
    assert not hits, hits


def test_test_file_basenames_are_unique() -> None:
    """The test folders are not packages, so pytest imports each test file by its basename: two files of the same
    name anywhere under tests/ make the whole suite fail at collection ("import file mismatch")."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(REPO)} and {path.relative_to(REPO)}")
        seen.setdefault(path.name, path)
    assert not clashes, f"rename one of each pair: {clashes}"
