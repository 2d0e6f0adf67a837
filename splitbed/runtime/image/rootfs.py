"""The Debian root filesystem of the node image: `debootstrap` once, then a cached tarball.

No registry is reachable from this machine, so no `FROM debian` either: debootstrap fetches packages from the
Debian mirror (reachable like every package registry) and the tree is packed into
`~/.cache/splitbed/docker/rootfs-<suite>-<variant>-<hash>.tar`. The next build reads the tarball (no network).
Building happens under a file lock so concurrent test runs build once; temporary trees of a crashed build
(`tmp-sb<pid>-*`, owner dead) are removed at the next build, unmounting anything debootstrap left mounted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from splitbed.runtime.errors import ImageBuildError
from splitbed.runtime.image.recipe import Recipe, cache_dir

DEBOOTSTRAP_TIMEOUT_S = 1200
_TMP_RE = re.compile(r"^tmp-sb(\d+)-")


def rootfs_path(recipe: Recipe) -> Path:
    """Where the tarball for this recipe's rootfs section lives (cached or not)."""
    spec = f"{recipe.suite}|{recipe.variant}|{','.join(sorted(recipe.include))}|{','.join(recipe.drop)}"
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return cache_dir() / f"rootfs-{recipe.suite}-{recipe.variant}-{digest}.tar"


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """Exclusive lock over the cache: one build at a time across processes."""
    with open(cache_dir() / "build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_rootfs(recipe: Recipe, log: list[str] | None = None) -> Path:
    """The cached rootfs tarball, made with debootstrap first if absent. Call under `build_lock()`."""
    target = rootfs_path(recipe)
    if target.is_file():
        return target
    sweep_stale_tmp()
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: run scripts/setup.sh (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ImageBuildError("building the node image's rootfs with debootstrap needs root")
    tmp = cache_dir() / f"tmp-sb{os.getpid()}-rootfs"
    started = time.monotonic()
    try:
        _debootstrap(recipe, tmp / "root")
        for rel in recipe.drop:
            _empty_dir(tmp / "root" / rel)
        partial = tmp / "rootfs.tar"
        with tarfile.open(partial, "w") as tar:
            tar.add(tmp / "root", arcname=".")
        os.replace(partial, target)
    finally:
        remove_tree(tmp)
    if log is not None:
        log.append(f"rootfs: debootstrap {recipe.variant} {recipe.suite} + tar in {time.monotonic() - started:.1f} s")
    return target


def _debootstrap(recipe: Recipe, root: Path) -> None:
    root.mkdir(parents=True)
    argv = ["debootstrap", f"--variant={recipe.variant}"]
    if recipe.include:
        argv.append(f"--include={','.join(recipe.include)}")
    argv += [recipe.suite, str(root), recipe.mirror]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"debootstrap did not finish within {DEBOOTSTRAP_TIMEOUT_S} s (mirror "
                              f"{recipe.mirror} slow or unreachable?)") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ImageBuildError(f"debootstrap failed (exit {done.returncode}) with mirror {recipe.mirror}; set "
                              f"SPLITBED_DEBIAN_MIRROR to a reachable mirror. Last lines:\n{tail}")


def _empty_dir(path: Path) -> None:
    if not path.is_dir() or path.is_symlink():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def sweep_stale_tmp() -> list[Path]:
    """Remove temporary build trees whose owner process is dead."""
    removed = []
    for entry in cache_dir().iterdir():
        match = _TMP_RE.match(entry.name)
        if match and not psutil.pid_exists(int(match.group(1))):
            remove_tree(entry)
            removed.append(entry)
    return removed


def remove_tree(path: Path) -> None:
    """rmtree that first lazily unmounts anything mounted below `path` (debootstrap mounts proc/sys in it)."""
    if not path.exists():
        return
    real = str(path.resolve())
    below = [m.mountpoint for m in psutil.disk_partitions(all=True)
             if m.mountpoint == real or m.mountpoint.startswith(real + "/")]
    for mountpoint in sorted(below, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mountpoint], capture_output=True, check=False)
    still = [m.mountpoint for m in psutil.disk_partitions(all=True) if m.mountpoint.startswith(real + "/")]
    if still:
        raise ImageBuildError(f"cannot remove {path}: still mounted below it: {still}")
    shutil.rmtree(path)
