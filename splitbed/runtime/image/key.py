"""The content key of the node image: a hash of everything that decides what goes into it.

Same key, same image: the build is skipped and the cached tag is used. Inputs: the recipe file, the builder's
own code, the interpreter (version, path, machine), the venv's path and the files that name it (closure.py:
`env_specific_paths`), splitbed's version, the dependency declarations of the
checkout's pyproject.toml (`requires-python`, `dependencies`, `optional-dependencies`: other edits, such as a
lint rule, do not decide the image's content and do not force a rebuild), and the name and version of every
distribution installed in the environment (so a `pip install` anywhere changes it). The project's own code is
not in the image (it is mounted, see splitbed.runtime.mounts), so editing it never forces a rebuild.

The image is two layers (build.py): a base with everything but the venv's path-specific files, keyed by
`base_key_inputs` (the same inputs without the venv's path and those files), and a small layer on top with them.
A second checkout with the same distributions (a fresh clone and `make setup`) reuses the base.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import sysconfig
from pathlib import Path

import splitbed
from splitbed.runtime.image.closure import IMAGE_VENV, env_specific_digest
from splitbed.runtime.image.recipe import Recipe, tomllib
from splitbed.runtime.mounts import source_checkout

BUILDER_DIR = Path(__file__).resolve().parent
# Installers, upgraded by every setup run, never imported by a node: not part of the key.
PACKAGING_TOOLS = {"pip", "setuptools", "wheel"}


def key_inputs(recipe: Recipe) -> dict[str, object]:
    """Everything the key hashes, JSON-able (also stored as an image label for inspection)."""
    checkout = source_checkout()
    pyproject = checkout / "pyproject.toml" if checkout else None
    declared = _declared_dependencies(pyproject) if pyproject and pyproject.is_file() else None
    # Only the environment's own site-packages (what the image copies), not sys.path: a checkout's
    # *.egg-info on the path (pytest's rootdir, `python -c` in the checkout) must not change the key.
    site_dirs = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    distributions = sorted({
        f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions(path=site_dirs)
        if dist.metadata["Name"] and dist.metadata["Name"].lower() not in PACKAGING_TOOLS
    })
    builder = hashlib.sha256()
    for path in sorted(BUILDER_DIR.glob("*.py")):
        builder.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "recipe_sha256": hashlib.sha256(recipe.text.encode()).hexdigest(),
        "builder_sha256": builder.hexdigest(),
        "python": sys.version,
        # Not sys.executable: `python`, `python3` and a console script's shebang name the same interpreter.
        "python_prefix": sys.prefix,
        "env_files_sha256": env_specific_digest(),
        "python_base": os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
        "machine": platform.machine(),
        "splitbed_version": splitbed.__version__,
        "pyproject_dependencies": declared,
        "distributions": distributions,
    }


ENV_ONLY_INPUTS = ("python_prefix", "env_files_sha256")


def base_key_inputs(inputs: dict[str, object]) -> dict[str, object]:
    """The inputs of the base layer: all but the venv's own path and path-naming files (they go in the top layer)."""
    base = {name: value for name, value in inputs.items() if name not in ENV_ONLY_INPUTS}
    base["venv_in_image"] = str(IMAGE_VENV)
    return base


def _declared_dependencies(pyproject: Path) -> dict[str, object]:
    project = tomllib.loads(pyproject.read_text()).get("project", {})
    return {"requires-python": project.get("requires-python"), "dependencies": project.get("dependencies"),
            "optional-dependencies": project.get("optional-dependencies")}


def content_key(recipe: Recipe, inputs: dict[str, object] | None = None) -> str:
    blob = json.dumps(inputs if inputs is not None else key_inputs(recipe), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def key_diff(old: dict[str, object], new: dict[str, object]) -> list[str]:
    """What changed between two key input sets, one line each (why an image is rebuilt)."""
    lines = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if isinstance(before, list) and isinstance(after, list):
            gone, added = sorted(set(before) - set(after)), sorted(set(after) - set(before))
            lines.append(f"{name}: -{gone} +{added}" if gone or added else f"{name}: same entries, reordered")
        else:
            lines.append(f"{name}: {before!r} -> {after!r}")
    return lines


def image_tag(recipe: Recipe, key: str | None = None, suffix: str = "") -> str:
    """`splitbed-node<suffix>:<splitbed version>-py<X.Y.Z>-<key[:12]>` (suffix "-base": the base layer's tag)."""
    key = key or content_key(recipe)
    py = ".".join(str(part) for part in sys.version_info[:3])
    return f"{recipe.repository}{suffix}:{splitbed.__version__}-py{py}-{key[:12]}"
