"""Whether the running environment is the locked one: constraints.txt (written by `make lock`, installed by
`make setup`) against the distributions installed in this interpreter's site-packages.

A figure is reproducible only if the software behind it is: records and sweep.json carry the lock file's sha256
and whether every distribution matched it (`status()`), and `splitbed doctor` names the drift. The lock is found
next to the package of an editable (source) install; a wheel install has no lock to compare with, and says so.
Names compare normalized (PEP 503), versions as the metadata spells them (pip freeze writes the same string).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import re
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

LOCK_NAME = "constraints.txt"
# The project itself: an editable install of the checkout, never a pin of the lock.
PROJECT = "splitbed"
MAX_LOCK_BYTES = 1 << 20  # a lock of a few hundred pins is ~5 kB: anything larger is not one
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")
_HEADER = re.compile(r"^#\s*(python|machine):\s*(.+?)\s*$")


def normalize(name: str) -> str:
    """PEP 503 name: `ml_dtypes`, `ML-DTypes` and `ml.dtypes` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Lock:
    path: Path
    sha256: str
    pins: dict[str, str]  # normalized name -> exact version
    python: str = ""  # "3.11": the interpreter the lock was resolved with (markers were evaluated for it)
    machine: str = ""  # "x86_64 linux"


def read_lock(path: Path) -> Lock:
    """Parse a lock: `name==version` lines and comments. ValueError (with the line) on anything else."""
    data = path.read_bytes()[: MAX_LOCK_BYTES + 1]
    if len(data) > MAX_LOCK_BYTES:
        raise ValueError(f"{path}: larger than {MAX_LOCK_BYTES} bytes: not a lock file")
    pins: dict[str, str] = {}
    header: dict[str, str] = {}
    for number, raw in enumerate(data.decode("utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if match := _HEADER.match(line):
                header[match.group(1)] = match.group(2)
            continue
        match = _PIN.match(line)
        if not match:
            raise ValueError(f"{path}:{number}: not an exact pin (name==version): {line[:80]!r}; "
                             "regenerate the file with `make lock`")
        pins[normalize(match.group(1))] = match.group(2)
    return Lock(path, hashlib.sha256(data).hexdigest(), pins, header.get("python", ""), header.get("machine", ""))


def lock_path() -> Path | None:
    """constraints.txt of the source checkout this splitbed runs from; None for a wheel install (the package
    inside the environment) or a checkout without one."""
    checkout = Path(__file__).resolve().parent.parent  # this module lives in the splitbed package
    prefix = Path(sys.prefix).resolve()
    if checkout == prefix or prefix in checkout.parents:
        return None
    path = checkout / LOCK_NAME
    return path if path.is_file() else None


def site_dirs() -> list[str]:
    """This environment's own site-packages: what `pip install` changes (not sys.path, which may hold a
    checkout's *.egg-info)."""
    return sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})


def installed(paths: Iterable[str] | None = None) -> dict[str, str]:
    """Normalized name -> version of every distribution in `paths` (default: `site_dirs()`)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=list(paths) if paths is not None else site_dirs()):
        try:
            name = dist.metadata["Name"]
        except FileNotFoundError:  # a *.dist-info without METADATA: importlib_metadata's finder (once anything
            continue               # imported it, it is on sys.meta_path too) raises where the stdlib's gives none
        if name:
            found.setdefault(normalize(name), dist.version)  # first on the path wins, as for an import
    return found


@dataclass(frozen=True)
class Drift:
    differ: list[tuple[str, str, str]] = field(default_factory=list)  # (name, installed, locked)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (name, locked): pinned, not installed
    extra: list[tuple[str, str]] = field(default_factory=list)  # (name, installed): installed, not pinned

    @property
    def matches(self) -> bool:
        return not (self.differ or self.missing or self.extra)

    @property
    def reinstall_fixes(self) -> bool:
        """`make setup` (pip install -c) puts differing and missing pins right; it removes nothing."""
        return bool(self.differ or self.missing)

    def describe(self, limit: int = 4) -> str:
        """One line: what differs, capped at `limit` names per kind ("" when it matches)."""
        parts = []
        for label, items in (("differ", [f"{n} {have} (lock {want})" for n, have, want in self.differ]),
                             ("missing", [f"{n} {want}" for n, want in self.missing]),
                             ("not in the lock", [f"{n} {have}" for n, have in self.extra])):
            if items:
                more = f" and {len(items) - limit} more" if len(items) > limit else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
        return "; ".join(parts)


def compare(lock: Lock, dists: dict[str, str]) -> Drift:
    """Every pin installed at its version, and nothing installed that the lock does not pin (but the project)."""
    dists = {name: version for name, version in dists.items() if name != PROJECT}
    return Drift(
        differ=sorted((n, dists[n], v) for n, v in lock.pins.items() if n in dists and dists[n] != v),
        missing=sorted((n, v) for n, v in lock.pins.items() if n not in dists),
        extra=sorted((n, v) for n, v in dists.items() if n not in lock.pins),
    )


@functools.lru_cache(maxsize=1)
def status() -> dict[str, str]:
    """For records and sweep.json: `lock_sha256` (of constraints.txt, "" without one) and `lock_match`
    ("yes", "no: <what differs>", or why it could not be checked). Cached: one process, one environment."""
    path = lock_path()
    if path is None:
        return {"lock_sha256": "", "lock_match": f"unknown: no {LOCK_NAME} (not a source checkout)"}
    try:
        lock = read_lock(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return {"lock_sha256": "", "lock_match": f"unknown: {exc}"}
    drift = compare(lock, installed())
    return {"lock_sha256": lock.sha256, "lock_match": "yes" if drift.matches else f"no: {drift.describe()}"}


def fix(drift: Drift) -> str:
    """The one command that makes this venv match the lock."""
    if drift.reinstall_fixes:
        return f"make setup (installs the versions pinned in {LOCK_NAME}; docs/INSTALL.md, \"Locked versions\")"
    names = " ".join(name for name, _ in drift.extra)
    return f".venv/bin/pip uninstall {names} (not in {LOCK_NAME}; make setup removes nothing)"


def main() -> int:
    """`python -m splitbed.envlock`, run by scripts/setup.sh when its stamp is current: exit 0 when the venv
    matches the lock, 1 when a re-install would fix it (differing or missing pins, or no readable lock), 2 when
    only unpinned distributions are installed (a re-install would not remove them); one line on stderr if not 0."""
    path = lock_path()
    if path is None:
        print(f"envlock: no {LOCK_NAME} beside this splitbed (not a source checkout)", file=sys.stderr)
        return 1
    try:
        drift = compare(read_lock(path), installed())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        print(f"envlock: {exc}", file=sys.stderr)
        return 1
    if drift.matches:
        return 0
    print(f"envlock: .venv drifts from {LOCK_NAME}: {drift.describe()}; fix: {fix(drift)}", file=sys.stderr)
    return 1 if drift.reinstall_fixes else 2


if __name__ == "__main__":
    sys.exit(main())
