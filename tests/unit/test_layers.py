"""Layers point down: the layer table in docs/ARCHITECTURE.md, checked against every import of the library (lazy
imports inside functions included), so the document and the code cannot drift apart.

A module may import from its own layer and the layers below. The packages of layer 0 (netem, the format, the host
readers) import nothing of the project but themselves: each can be lifted out on its own. Every module must sit
in a layer: a new module is placed in the table in the same commit that adds it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"
PACKAGES = ("netem", "splitbed")
LAYER_LINE = re.compile(r"^(\d+) ([^:]+): (.+)$")


def layer_table() -> list[tuple[int, str, list[str]]]:
    """(layer, name, module patterns) from the ```layers block of docs/ARCHITECTURE.md; `pkg.*` = the package."""
    block = re.search(r"^```layers\n(.*?)^```", ARCHITECTURE.read_text(), flags=re.S | re.M)
    assert block, "docs/ARCHITECTURE.md has no ```layers block"
    rows = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = LAYER_LINE.match(line)
        assert match, f"bad line in the layers block: {line!r}"
        rows.append((int(match.group(1)), match.group(2), match.group(3).split()))
    assert [r[0] for r in rows] == list(range(len(rows))), "layers are numbered 0, 1, 2, ... bottom first"
    return rows


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in its code. `from a import b` counts as a.b when a.b is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found.update(subs or {node.module})
    return {name for name in found if name.split(".")[0] in PACKAGES}


def placement(module: str, table: list[tuple[int, str, list[str]]]) -> tuple[int, str] | None:
    """(layer, pattern) of the most specific pattern that covers `module`."""
    best: tuple[int, int, str] | None = None
    for layer, _, patterns in table:
        for pattern in patterns:
            package = pattern.removesuffix(".*")
            covers = module == package if package == pattern else module == package or \
                module.startswith(package + ".")
            if covers and (best is None or len(package) > best[0]):
                best = (len(package), layer, pattern)
    return None if best is None else (best[1], best[2])


def test_every_module_has_a_layer() -> None:
    table = layer_table()
    unplaced = [m for m in library_modules() if placement(m, table) is None]
    assert not unplaced, f"place these modules in the layers block of docs/ARCHITECTURE.md: {unplaced}"


def test_every_layer_entry_names_something_that_exists() -> None:
    modules = library_modules()
    stale = [p for _, _, patterns in layer_table() for p in patterns if p.removesuffix(".*") not in modules]
    assert not stale, f"the layers block names modules that do not exist: {stale}"


def test_imports_point_down_and_layer_0_packages_stand_alone() -> None:
    table = layer_table()
    modules = library_modules()
    known = set(modules)
    wrong = []
    for module, path in modules.items():
        here = placement(module, table)
        assert here is not None
        for target in sorted(imports(path, known)):
            there = placement(target, table)
            if there is None:
                continue  # a name that is not a module of ours (e.g. a package attribute); nothing to order
            if there[0] > here[0]:
                wrong.append(f"{module} (layer {here[0]}) imports {target} (layer {there[0]})")
            elif here[0] == 0 and there[1] != here[1]:
                wrong.append(f"{module} ({here[1]}) imports {target} ({there[1]}): layer 0 packages stand alone")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("banned", ["splitbed.sweep", "splitbed.advise", "splitbed.report"])
def test_no_node_module_imports_the_campaigns_or_the_tools(banned: str) -> None:
    modules = library_modules()
    known = set(modules)
    hits = [m for m, path in modules.items() if m.startswith("splitbed.nodes")
            for target in imports(path, known) if target == banned or target.startswith(banned + ".")]
    assert not hits, hits


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    """The rule would be hollow if an import inside a function escaped it."""
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from splitbed.sweep import plan\n    import netem.profile\n")
    known = {"splitbed.sweep", "splitbed.sweep.plan", "netem.profile"}
    assert imports(source, known) == {"splitbed.sweep.plan", "netem.profile"}
