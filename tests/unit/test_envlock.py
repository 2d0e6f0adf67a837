"""The lock (constraints.txt): it pins every declared dependency inside pyproject.toml's range, everything that
installs the project uses it, setup's stamp changes with it, and drift from it is found on real distribution
metadata and named by `splitbed doctor` with its fix."""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from netem.doctor import is_ci
from splitbed import doctor as sb_doctor
from splitbed import envlock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / envlock.LOCK_NAME


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def test_the_lock_pins_every_declared_dependency_inside_its_range() -> None:
    lock = envlock.read_lock(LOCK)
    assert lock.python and lock.machine, "constraints.txt lacks its '# python:' / '# machine:' header (make lock)"
    # Markers are evaluated for the interpreter the lock was resolved with (tomli: Python < 3.11 only).
    major, minor = lock.python.split(".")
    env = {**default_environment(), "python_version": lock.python, "python_full_version": f"{major}.{minor}.0"}
    checked = 0
    for req in _declared():
        if req.marker is not None and not req.marker.evaluate(env):
            assert envlock.normalize(req.name) not in lock.pins, f"{req.name} is pinned but not needed on {lock.python}"
            continue
        name = envlock.normalize(req.name)
        assert name in lock.pins, f"{req} (pyproject.toml) has no pin in constraints.txt: run make lock"
        assert req.specifier.contains(lock.pins[name], prereleases=True), \
            f"constraints.txt pins {name}=={lock.pins[name]}, outside pyproject.toml's {req}: run make lock"
        checked += 1
    assert checked >= 25  # 24 runtime dependencies (tomli aside) and 5 dev ones
    assert "pip" in lock.pins  # setup.sh installs pip at its locked version too


def test_every_line_of_the_lock_is_one_exact_pin_or_a_comment() -> None:
    lines = [line for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == len(envlock.read_lock(LOCK).pins), "a distribution is pinned twice"
    assert not [line for line in lines if ";" in line], "no markers: the lock is for one kind of machine"


def test_read_lock_rejects_a_range_with_one_line_naming_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "constraints.txt"
    bad.write_text("numpy==2.4.6\nscipy>=1.11\n")
    with pytest.raises(ValueError, match=r"constraints.txt:2: not an exact pin .*make lock"):
        envlock.read_lock(bad)
    bad.write_bytes(b"#" * (envlock.MAX_LOCK_BYTES + 1))
    with pytest.raises(ValueError, match="not a lock file"):
        envlock.read_lock(bad)


VENV_SITE = envlock.site_dirs()  # before any test replaces it


def _site_with(tmp_path: Path, versions: dict[str, str]) -> Path:
    """A site-packages holding real dist-info metadata: each named installed distribution's own METADATA, with
    its Version line set to `versions[name]`."""
    site = tmp_path / "site-packages"
    for name, version in versions.items():
        # the installed distribution's, from this venv's site-packages: on sys.path a checkout's *.egg-info (no
        # METADATA) can come first
        [text] = [t for t in (d.read_text("METADATA") for d in importlib.metadata.distributions(
            name=name, path=VENV_SITE)) if t][:1]
        text = re.sub(r"^Version: .*$", f"Version: {version}", text, count=1, flags=re.M)
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(text)
    return site


def test_drift_is_found_on_real_metadata_and_the_doctor_names_it_with_the_fix(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    numpy, zstd, lz4 = (importlib.metadata.version(n) for n in ("numpy", "zstandard", "lz4"))
    lock_file = tmp_path / "constraints.txt"
    lock_file.write_text(f"# python: 3.11\nnumpy=={numpy}\nzstandard=={zstd}\nml_dtypes==0.6.0\n")
    site = _site_with(tmp_path, {"numpy": "1.26.4", "zstandard": zstd, "lz4": lz4, "splitbed": "0.1.0"})
    lock = envlock.read_lock(lock_file)
    drift = envlock.compare(lock, envlock.installed([str(site)]))
    assert drift.differ == [("numpy", "1.26.4", numpy)]
    assert drift.missing == [("ml-dtypes", "0.6.0")]  # ml_dtypes == ml-dtypes (PEP 503)
    assert drift.extra == [("lz4", lz4)]  # splitbed itself is never a pin
    assert not drift.matches
    assert f"numpy 1.26.4 (lock {numpy})" in drift.describe() and "\n" not in drift.describe()

    monkeypatch.setattr(envlock, "lock_path", lambda: lock_file)
    monkeypatch.setattr(envlock, "site_dirs", lambda: [str(site)])
    probe = sb_doctor.probe_environment_lock()
    assert not probe.ok and not probe.must_have
    assert f"numpy 1.26.4 (lock {numpy})" in probe.detail and lock.sha256[:12] in probe.detail
    assert probe.fix.startswith("make setup") and probe.fix == envlock.fix(drift)
    extras_only = envlock.Drift(extra=[("lz4", lz4)])
    assert not extras_only.reinstall_fixes and envlock.fix(extras_only).startswith(".venv/bin/pip uninstall lz4")
    envlock.status.cache_clear()
    try:
        status = envlock.status()
        assert status["lock_sha256"] == lock.sha256 and status["lock_match"].startswith("no: 1 differ: numpy")
    finally:
        envlock.status.cache_clear()

    same = _site_with(tmp_path / "same", {"numpy": numpy, "zstandard": zstd, "ml_dtypes": "0.6.0"})
    assert envlock.compare(lock, envlock.installed([str(same)])).matches


IN_CHECKOUT = Path(envlock.__file__).resolve().parents[1] == REPO and sys.prefix != sys.base_prefix
NOT_A_CHECKOUT = "splitbed runs from a wheel install here (tox's envs): no lock beside it to compare with"


@pytest.mark.skipif(not IN_CHECKOUT, reason=NOT_A_CHECKOUT)
def test_this_venv_matches_the_lock_or_the_doctor_says_how_it_drifts() -> None:
    drift = envlock.compare(envlock.read_lock(LOCK), envlock.installed())
    probe = sb_doctor.probe_environment_lock()
    assert probe.ok is drift.matches
    assert envlock.status()["lock_match"] == ("yes" if drift.matches else f"no: {drift.describe()}")
    if not drift.matches:
        assert probe.fix.startswith("make setup") and drift.describe() in probe.detail
    # What scripts/setup.sh asks when its stamp is current: 0 matches, 1 a re-install fixes it, 2 extras only.
    done = subprocess.run([sys.executable, "-m", "splitbed.envlock"], capture_output=True, text=True, timeout=60)
    assert done.returncode == (0 if drift.matches else 1 if drift.reinstall_fixes else 2), done.stderr
    assert done.stderr.count("\n") == (0 if drift.matches else 1)
    if is_ci():  # a fresh `make setup` installed exactly the lock
        assert drift.matches, f"the venv drifts from constraints.txt: {drift.describe()}"


def _setup_copy(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    for name in ("pyproject.toml", envlock.LOCK_NAME):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def _stamp(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "scripts/setup.sh", "--stamp"], cwd=root, capture_output=True, text=True,
                          timeout=30)


def test_the_setup_stamp_changes_with_the_lock_and_pyproject(tmp_path: Path) -> None:
    root = _setup_copy(tmp_path)
    first = _stamp(root).stdout.strip()
    lock_sha = hashlib.sha256((root / envlock.LOCK_NAME).read_bytes()).hexdigest()
    assert lock_sha in first and lock_sha == envlock.read_lock(LOCK).sha256  # the hash the records carry
    assert _stamp(root).stdout.strip() == first
    (root / "README.md").write_text("not an input\n")
    assert _stamp(root).stdout.strip() == first
    lock = root / envlock.LOCK_NAME
    lock.write_text(re.sub(r"^numpy==.*$", "numpy==1.26.4", lock.read_text(), flags=re.M))
    changed = _stamp(root).stdout.strip()
    assert changed != first and hashlib.sha256(lock.read_bytes()).hexdigest() in changed
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text() + "\n")
    assert _stamp(root).stdout.strip() not in (first, changed)
    lock.unlink()
    missing = _stamp(root)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "make lock" in missing.stderr


def test_everything_that_installs_the_project_uses_the_lock() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text()
    installs = [line for line in setup.splitlines()
                if re.search(r"\bpip install\b", line) and not line.lstrip().startswith("#")]
    assert installs and all('-c "$LOCK"' in line for line in installs), installs
    assert re.search(r"^lock:\n\t@bash scripts/lock\.sh$", (REPO / "Makefile").read_text(), flags=re.M)
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    envs = [s for s in tox.sections() if s.startswith("testenv:")]
    assert envs and all(tox[s].get("constraints") == "{toxinidir}/constraints.txt" for s in envs)
    assert "make lock" in (REPO / "docs" / "INSTALL.md").read_text()


@pytest.mark.skipif(not IN_CHECKOUT, reason=NOT_A_CHECKOUT)
def test_the_lock_of_a_source_checkout_is_found_next_to_the_package() -> None:
    assert envlock.lock_path() == LOCK


def test_a_dist_info_without_metadata_is_skipped_not_a_crash(tmp_path: Path) -> None:
    """importlib_metadata's finder, on sys.meta_path once anything imported it, raises on such a directory."""
    importlib.import_module("importlib_metadata")
    site = _site_with(tmp_path, {"numpy": "1.26.4"})
    (site / "broken-1.0.dist-info").mkdir()
    assert envlock.installed([str(site)]) == {"numpy": "1.26.4"}
