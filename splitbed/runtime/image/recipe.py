"""The node image recipe (recipe.toml beside this module) and where build artefacts are cached."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from splitbed.models import cachedirs
from splitbed.runtime.errors import ImageBuildError

RECIPE_PATH = Path(__file__).with_name("recipe.toml")


@dataclass(frozen=True)
class Recipe:
    version: int
    repository: str
    suite: str
    variant: str
    include: tuple[str, ...]
    mirror: str
    drop: tuple[str, ...]
    exclude_stdlib: tuple[str, ...]
    exclude_site_packages: tuple[str, ...]
    smoke_imports: tuple[str, ...]
    smoke_timeout_s: float
    env: dict[str, str]
    text: str  # the file's bytes as text: part of the image's content key


def load_recipe(path: Path = RECIPE_PATH) -> Recipe:
    """Parse and check the recipe; a malformed file is an `ImageBuildError` naming the bad field."""
    text = path.read_text()
    try:
        data = tomllib.loads(text)
        rootfs, python = data["rootfs"], data["python"]
        recipe = Recipe(
            version=int(data["recipe_version"]),
            repository=str(data["repository"]),
            suite=str(rootfs["suite"]),
            variant=str(rootfs["variant"]),
            include=tuple(str(p) for p in rootfs.get("include", [])),
            mirror=os.environ.get("SPLITBED_DEBIAN_MIRROR") or str(rootfs["mirror"]),
            drop=tuple(str(p) for p in rootfs.get("drop", [])),
            exclude_stdlib=tuple(str(p) for p in python.get("exclude_stdlib", [])),
            exclude_site_packages=tuple(str(p) for p in python.get("exclude_site_packages", [])),
            smoke_imports=tuple(str(m) for m in python["smoke_imports"]),
            smoke_timeout_s=float(python.get("smoke_timeout_s", 300)),
            env={str(k): str(v) for k, v in data.get("env", {}).items()},
            text=text,
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ImageBuildError(f"image recipe {path} is malformed: {exc!r}") from exc
    for field, value in (("repository", recipe.repository), ("suite", recipe.suite), ("variant", recipe.variant)):
        if not value.replace("-", "").replace("_", "").isalnum() or value.lower() != value:
            raise ImageBuildError(f"image recipe {path}: {field}={value!r} must be lower-case letters/digits/-/_")
    return recipe


def cache_dir() -> Path:
    """~/.cache/splitbed/docker (or $XDG_CACHE_HOME/splitbed/docker: splitbed.models.cachedirs); holds the rootfs
    tarball and the lock."""
    path = cachedirs.cache_dir("docker")
    path.mkdir(parents=True, exist_ok=True)
    return path
