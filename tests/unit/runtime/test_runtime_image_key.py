"""The node image's content key: stable for one environment however Python is started (so a test run and the
CLI share one cached image), different when an input that decides the image's content changes."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from splitbed.runtime.image.key import base_key_inputs, content_key, image_tag, key_diff, key_inputs
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


BASE_SNIPPET = ("import json;from splitbed.runtime.image.key import base_key_inputs, content_key, key_inputs;"
                "from splitbed.runtime.image.recipe import load_recipe;r = load_recipe();i = key_inputs(r);"
                "print(json.dumps([content_key(r, base_key_inputs(i)), content_key(r, i)]))")


def twin_venv(root: Path, skip: str = "") -> Path:
    """A second venv at another path with this venv's distributions (site-packages entries symlinked, bar the
    editable install's path-naming files and any entry starting with `skip`), as a fresh clone's setup makes."""
    import sysconfig

    real_site = Path(sysconfig.get_paths()["purelib"])
    venv = root / "venv"
    site = venv / real_site.relative_to(Path(sys.prefix))
    site.mkdir(parents=True)
    (venv / "bin").mkdir()
    (venv / "bin" / "python").symlink_to(Path(sys._base_executable).resolve())  # type: ignore[attr-defined]
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys._base_executable).resolve().parent}\n"  # type: ignore[attr-defined]
                                     "include-system-site-packages = false\n")
    for entry in real_site.iterdir():
        if entry.name.startswith("__editable__") or (skip and entry.name.lower().startswith(skip)):
            continue
        (site / entry.name).symlink_to(entry)
    return venv


def keys_in(venv: Path) -> tuple[str, str]:
    done = subprocess.run([str(venv / "bin" / "python"), "-c", BASE_SNIPPET], cwd=CHECKOUT, capture_output=True,
                          text=True, timeout=180, check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(CHECKOUT)})
    base, full = json.loads(done.stdout)
    return base, full


def test_another_venv_path_with_the_same_distributions_shares_the_base_layer(tmp_path: Path) -> None:
    """A clean clone's venv lives at a new path: its image's top layer differs (that path is in it), its base
    layer (the venv's 2 GB) does not. One distribution fewer changes the base too."""
    here_inputs = key_inputs(load_recipe())
    here = (content_key(load_recipe(), base_key_inputs(here_inputs)), content_key(load_recipe(), here_inputs))
    twin = keys_in(twin_venv(tmp_path / "twin"))
    assert twin[0] == here[0] and twin[1] != here[1]
    fewer = keys_in(twin_venv(tmp_path / "fewer", skip="zstandard"))
    assert fewer[0] != here[0]


def test_the_venv_goes_to_a_fixed_path_without_its_path_naming_files() -> None:
    from splitbed.runtime.image.closure import IMAGE_VENV, env_specific_paths, python_payload

    venv = Path(sys.prefix).resolve()
    specific = env_specific_paths()
    assert venv / "bin" in specific and venv / "pyvenv.cfg" in specific
    assert any(p.name.startswith("splitbed-") and p.name.endswith(".dist-info") for p in specific)  # editable
    tree = next(t for t in python_payload(load_recipe()).trees if t.root == venv)
    assert tree.arc_root == IMAGE_VENV
    assert tree.excluded(venv / "bin") and tree.excluded(venv / "pyvenv.cfg")
    assert not tree.excluded(venv / "lib")
    numpy_dir = Path(__import__("numpy").__file__).resolve().parent
    assert not tree.excluded(numpy_dir)
    # TensorFlow's C++ headers stay out (recipe.toml, exclude_site_packages); its Python code and libraries go in
    spec = importlib.util.find_spec("tensorflow")
    assert spec is not None and spec.origin is not None
    tensorflow_dir = Path(spec.origin).resolve().parent
    assert tree.excluded(tensorflow_dir / "include")
    assert not tree.excluded(tensorflow_dir) and not tree.excluded(tensorflow_dir / "python")
    inputs = key_inputs(load_recipe())
    assert "python_prefix" not in base_key_inputs(inputs) and "env_files_sha256" not in base_key_inputs(inputs)
