"""The node image's content key: stable for one environment however Python is started (so a test run and the
CLI share one cached image), different when an input that decides the image's content changes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from splitbed.runtime.image.key import content_key, image_tag, key_diff, key_inputs
from splitbed.runtime.image.recipe import load_recipe

KEY_SNIPPET = ("from splitbed.runtime.image.key import content_key;"
               "from splitbed.runtime.image.recipe import load_recipe;print(content_key(load_recipe()))")
CHECKOUT = Path(__file__).resolve().parents[3]


def test_key_is_the_same_from_any_directory_and_interpreter_spelling(tmp_path: Path) -> None:
    here = content_key(load_recipe())
    bindir = Path(sys.prefix) / "bin"
    for python, cwd in ((bindir / "python", CHECKOUT), (bindir / "python3", tmp_path)):
        if not python.exists():
            continue
        done = subprocess.run([str(python), "-c", KEY_SNIPPET], cwd=cwd, capture_output=True, text=True,
                              timeout=120, check=True)
        assert done.stdout.strip() == here, (python, cwd)


def test_key_follows_the_recipe_and_says_what_changed() -> None:
    recipe = load_recipe()
    inputs = key_inputs(recipe)
    changed = dataclasses.replace(recipe, text=recipe.text + "\n# one more comment\n")
    assert content_key(changed) != content_key(recipe)
    assert content_key(recipe, inputs) == content_key(recipe)
    assert not any(name.lower().startswith(("pip==", "setuptools==", "wheel==")) for name in inputs["distributions"])
    other = dict(inputs, distributions=[*inputs["distributions"], "extra-package==1.0"], python="3.99")
    assert key_diff(inputs, other) == ["distributions: -[] +['extra-package==1.0']", f"python: {inputs['python']!r} -> '3.99'"]
    tag = image_tag(recipe, "ab" * 32)
    assert tag.startswith(f"{recipe.repository}:") and tag.endswith("-abababababab")
