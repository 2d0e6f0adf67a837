"""What of this host goes into the node image: the interpreter, the environment, and the shared libraries
they need that the Debian rootfs lacks.

The interpreter is copied at its own absolute path. The virtualenv is copied to one fixed path, `IMAGE_VENV`, minus
the files that name the host's venv or checkout (`bin/` with its shebangs, `pyvenv.cfg`, editable installs: see
`env_specific_paths`), so two checkouts with the same distributions share that base layer. Those files and a
symlink from the host's venv path to `IMAGE_VENV` go into a small layer of their own (build.py), so
`sys.executable` of the host is a valid command inside the container and `sys.prefix` equals the host's. Shared libraries come
from `ldd` over every ELF file copied (interpreter, libpython, lib-dynload, extension modules): any library
that resolves outside the copied trees and is absent from the rootfs is added from the host at its real path,
with its soname link beside it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from splitbed.runtime.errors import ImageBuildError
from splitbed.runtime.image.recipe import Recipe

LDD_BATCH = 64
IMAGE_VENV = Path("/opt/splitbed/venv")  # where every image holds the virtualenv, whatever the host's path
_VENV_SPECIFIC = ("bin", "pyvenv.cfg")  # name the host's venv path (shebangs, `command = ... venv <path>`)


@dataclass
class Tree:
    """A host directory copied whole, minus entries matching `exclude` (globs relative to `root`)."""

    root: Path
    exclude: tuple[str, ...] = ()
    arc_root: Path | None = None  # where the tree goes in the image (default: its own path)

    def excluded(self, path: Path) -> bool:
        rel = path.relative_to(self.root).as_posix()
        return any(fnmatch.fnmatch(rel, pattern) for pattern in self.exclude)


@dataclass
class Payload:
    """Host paths to add to the image on top of the rootfs."""

    trees: list[Tree] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # single files or symlinks, added as they are
    libs: list[tuple[Path, Path | None]] = field(default_factory=list)  # (real file, soname link or None)
    unresolved: list[str] = field(default_factory=list)  # "lib => not found" on the host too


def python_payload(recipe: Recipe) -> Payload:
    """The interpreter (executable, libpython, stdlib) and the active environment."""
    payload = Payload()
    in_venv = sys.prefix != sys.base_prefix
    stdlib = Path(os.__file__).resolve().parent
    exclude = tuple(recipe.exclude_stdlib) + ("lib-dynload/_tkinter*",)
    if not in_venv:  # no venv: the packages live in the interpreter's own site-packages
        exclude = tuple(p for p in exclude if p != "site-packages") + site_packages_excludes(recipe, stdlib)
    payload.trees.append(Tree(stdlib, exclude))
    payload.files += symlink_chain(Path(sys.executable))
    payload.files += symlink_chain(Path(getattr(sys, "_base_executable", sys.executable)))
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        payload.files += _libpython()
    if in_venv:
        venv = Path(sys.prefix).resolve()
        specific = tuple(path.relative_to(venv).as_posix() for path in env_specific_paths())
        payload.trees.append(Tree(venv, specific + site_packages_excludes(recipe, venv), arc_root=IMAGE_VENV))
        # bin/python* live in the venv: they come with the environment's own layer, not the base.
        payload.files = [p for p in payload.files if not _under(p, venv) and not _under(p, Path(sys.prefix))]
    payload.files = _unique(payload.files)
    return payload


def site_packages_excludes(recipe: Recipe, root: Path) -> tuple[str, ...]:
    """The recipe's `exclude_site_packages` entries as globs relative to `root` (the tree that holds this
    environment's site-packages: the venv, or the interpreter's standard library directory)."""
    found: list[str] = []
    for site in sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}):
        site_dir = Path(site).resolve()
        if _under(site_dir, root):
            found += [(site_dir / entry).relative_to(root).as_posix() for entry in recipe.exclude_site_packages]
    return tuple(dict.fromkeys(found))


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def env_specific_paths() -> list[Path]:
    """Paths in the active venv (resolved) whose content names this venv or checkout: `bin/`, `pyvenv.cfg`, and
    every file of an editable install (its dist-info with `direct_url.json`, its `.pth` and finder module).
    Empty outside a venv."""
    if sys.prefix == sys.base_prefix:
        return []
    venv = Path(sys.prefix).resolve()
    found = [venv / name for name in _VENV_SPECIFIC if (venv / name).exists()]
    site_dirs = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    for dist in importlib.metadata.distributions(path=site_dirs):
        direct = dist.read_text("direct_url.json")
        try:
            editable = bool(direct and json.loads(direct).get("dir_info", {}).get("editable"))
        except ValueError:
            editable = False
        if not editable:
            continue
        for file in dist.files or []:
            real = Path(os.path.realpath(str(dist.locate_file(file))))
            if _under(real, venv) and real.exists() and real.relative_to(venv).parts[0] == "lib":
                # (bin/ is listed whole above); a dist-info directory goes whole, not file by file
                found.append(real.parent if real.parent.name.endswith(".dist-info") else real)
    return sorted(set(found))


def env_specific_digest() -> str:
    """sha256 over the names and bytes (symlinks: targets) of `env_specific_paths()`, for the image key."""
    digest = hashlib.sha256()
    for top in env_specific_paths():
        walk = [top] if not top.is_dir() or top.is_symlink() else sorted(
            [top] + [Path(d) / n for d, dirs, names in os.walk(top) for n in dirs + names])
        for path in walk:
            digest.update(str(path).encode() + b"\0")
            if path.is_symlink():
                digest.update(b"->" + os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _libpython() -> list[Path]:
    libdir = Path(str(sysconfig.get_config_var("LIBDIR")))
    names = {sysconfig.get_config_var("LDLIBRARY"), sysconfig.get_config_var("INSTSONAME")}
    found = []
    for name in sorted(n for n in names if n):
        found += symlink_chain(libdir / str(name)) if (libdir / str(name)).exists() else []
    return found


def symlink_chain(path: Path) -> list[Path]:
    """`path`, each symlink it passes through, and the final file (all absolute)."""
    chain: list[Path] = []
    current = Path(os.path.abspath(path))
    for _ in range(40):
        chain.append(current)
        if not current.is_symlink():
            return chain
        current = Path(os.path.abspath(current.parent / os.readlink(current)))
    raise ImageBuildError(f"symlink loop at {path}")


def _unique(paths: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def elf_files(payload: Payload) -> list[Path]:
    """Regular files in the payload that may be dynamically linked (executables and shared objects)."""
    found = [p for p in payload.files if p.is_file() and not p.is_symlink() and _is_elf(p)]
    for tree in payload.trees:
        for dirpath, dirnames, filenames in os.walk(tree.root):
            base = Path(dirpath)
            dirnames[:] = [d for d in dirnames if not tree.excluded(base / d)]
            for name in filenames:
                path = base / name
                if (".so" in name and not path.is_symlink() and not tree.excluded(path)
                        and _is_elf(path)):
                    found.append(path)
    return found


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def ldd_dependencies(files: list[Path]) -> tuple[set[Path], list[str]]:
    """Resolved library paths needed by `files`, and the "not found" ones (unresolvable on the host too)."""
    resolved: set[Path] = set()
    missing: list[str] = []
    for start in range(0, len(files), LDD_BATCH):
        batch = [str(p) for p in files[start:start + LDD_BATCH]]
        done = subprocess.run(["ldd", *batch], capture_output=True, text=True, check=False, timeout=300)
        current = ""
        for line in done.stdout.splitlines():
            if not line.startswith(("\t", " ")):
                current = line.rstrip(":")
                continue
            text = line.strip()
            if "=> not found" in text:
                missing.append(f"{current}: {text.split()[0]}")
            elif "=>" in text:
                target = text.split("=>", 1)[1].strip().split(" (")[0]
                if target.startswith("/"):
                    resolved.add(Path(target))
            elif text.startswith("/"):
                resolved.add(Path(text.split(" (")[0]))
    return resolved, missing


def rootfs_members(rootfs_tar: Path) -> set[str]:
    """Member names of the rootfs tarball, without the leading './'."""
    with tarfile.open(rootfs_tar) as tar:
        return {_norm(name) for name in tar.getnames()}


def _norm(name: str) -> str:
    return name[2:] if name.startswith("./") else name.lstrip("/")


def _in_rootfs(lib: Path, members: set[str]) -> bool:
    candidates = {str(lib), os.path.realpath(lib)}
    for text in list(candidates):  # merged /usr: /lib/x is /usr/lib/x in the rootfs
        if text.startswith("/lib"):
            candidates.add("/usr" + text)
        if text.startswith("/usr/lib"):
            candidates.add(text[len("/usr"):])
    return any(_norm(c) in members for c in candidates)


def add_missing_libraries(payload: Payload, rootfs_tar: Path) -> Payload:
    """Fill `payload.libs` with host libraries the payload needs and the rootfs lacks."""
    needed, payload.unresolved = ldd_dependencies(elf_files(payload))
    members = rootfs_members(rootfs_tar)
    tree_roots = [tree.root for tree in payload.trees]
    for lib in sorted(needed):
        real = Path(os.path.realpath(lib))
        if any(root == real or root in real.parents for root in tree_roots) or real in payload.files:
            continue
        if _in_rootfs(lib, members):
            continue
        link = real.parent / lib.name if lib.name != real.name else None
        payload.libs.append((real, link))
    return payload
