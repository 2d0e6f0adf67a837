"""What a container node sees of the host: read-only bind mounts at the same absolute paths.

The image holds the interpreter and the installed dependencies. The splitbed and netem code of an editable
(source) install is mounted read-only from the checkout, so a container runs exactly the code a process node
runs, without an image rebuild after each edit. Paths given on a node's command line (images, weights files)
must be visible too: the checkout's `fixtures/` and Keras's weight cache are mounted by default, anything else
is passed as `extra`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import netem
import splitbed
from splitbed import envlock
from splitbed.runtime.errors import NodeStartError

PACKAGES = (splitbed, netem)


@dataclass(frozen=True)
class Mount:
    """A host path bound at the same path in the container."""

    path: Path
    read_only: bool = True

    def docker_bind(self) -> str:
        return f"{self.path}:{self.path}:{'ro' if self.read_only else 'rw'}"


def package_dirs() -> list[Path]:
    """Directories of the splitbed and netem packages on this host."""
    return [Path(package.__file__).resolve().parent for package in PACKAGES]  # type: ignore[arg-type]


def source_checkout() -> Path | None:
    """The source checkout when splitbed is an editable install (its code lives outside the venv), else None."""
    here = Path(splitbed.__file__).resolve().parent.parent
    prefix = Path(sys.prefix).resolve()
    if here == prefix or prefix in here.parents:
        return None
    return here


def default_mounts() -> list[Mount]:
    """Source packages (editable installs), the checkout's fixtures/ and lock (constraints.txt), and
    ~/.keras/models when present."""
    mounts: list[Mount] = []
    checkout = source_checkout()
    if checkout is not None:
        mounts += [Mount(path) for path in package_dirs()]
        fixtures = checkout / "fixtures"
        if fixtures.is_dir():
            mounts.append(Mount(fixtures))
        lock = checkout / envlock.LOCK_NAME
        if lock.is_file():  # so a container node's records say whether its (copied) venv is the locked one
            mounts.append(Mount(lock))
    keras_models = Path.home() / ".keras" / "models"
    if keras_models.is_dir():
        mounts.append(Mount(keras_models.resolve()))
    return mounts


def as_mounts(paths: list[Path | str | Mount] | tuple[Path | str | Mount, ...]) -> list[Mount]:
    """Normalise extra mounts: plain paths are read-only; each must exist on the host."""
    result = []
    for item in paths:
        mount = item if isinstance(item, Mount) else Mount(Path(item))
        resolved = mount.path.resolve()
        if not resolved.exists():
            raise NodeStartError(f"cannot mount {mount.path} into a node container: it does not exist")
        result.append(Mount(resolved, mount.read_only))
    return result
