"""Build, cache, list and remove the node image.

Build = one `docker import` of a tar stream: the cached Debian rootfs, then the host's interpreter and venv at
their own paths, then the missing shared libraries. The stream is produced by a thread into a pipe and sent
chunked, so the ~2 GB never lands on disk twice. The result is imported under a temporary tag
(`splitbed-node-tmp:sb<pid>-...`), smoke-tested (imports, versions equal to the host's), then tagged with its
content key; a failed or interrupted build leaves nothing tagged as good (a temporary tag of a dead owner is
swept by the next build).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from splitbed.models import tfboot
from splitbed.runtime import engine
from splitbed.runtime.errors import ImageBuildError
from splitbed.runtime.image.closure import (
    IMAGE_VENV,
    Payload,
    Tree,
    add_missing_libraries,
    env_specific_paths,
    python_payload,
    rootfs_members,
    symlink_chain,
)
from splitbed.runtime.image.key import base_key_inputs, content_key, image_tag, key_diff, key_inputs
from splitbed.runtime.image.recipe import Recipe, cache_dir, load_recipe
from splitbed.runtime.image.rootfs import build_lock, ensure_rootfs
from splitbed.runtime.mounts import default_mounts

if TYPE_CHECKING:
    import docker

IMAGE_KIND_NODE = "node"
IMAGE_KIND_BASE = "node-base"
TMP_SUFFIX = "-tmp"
BASE_SUFFIX = "-base"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CHUNK = 1024 * 1024
BUILD_API_TIMEOUT_S = 1800.0
_TMP_TAG_RE = re.compile(r"^sb(\d+)-")
_LAYER_NAME = "-layer-"
_LAYER_RE = re.compile(r"^/?sb(\d+)-layer-\d+$")


@dataclass
class ImageInfo:
    """The node image to use, and how getting it went."""

    tag: str
    key: str
    built: bool  # False: the cached image was used
    seconds: float  # time to make it available (build, or just the cache check)
    log: list[str] = field(default_factory=list)
    base: str = ""  # the tag of the base layer it is built on (shared by environments with the same content)


def ensure_image(client: docker.DockerClient | None = None, rebuild: bool = False) -> ImageInfo:
    """The tag of a ready node image for this environment, building it first when not cached."""
    if client is None:
        with contextlib.closing(engine.connect()) as own_client:
            return ensure_image(own_client, rebuild)
    started = time.monotonic()
    recipe = load_recipe()
    inputs = key_inputs(recipe)
    key = content_key(recipe, inputs)
    tag = image_tag(recipe, key)
    base = image_tag(recipe, content_key(recipe, base_key_inputs(inputs)), BASE_SUFFIX)
    if not rebuild and _exists(client, tag):
        return ImageInfo(tag, key, built=False, seconds=time.monotonic() - started, base=base)
    with build_lock():
        if not rebuild and _exists(client, tag):  # another process built it while we waited
            return ImageInfo(tag, key, built=False, seconds=time.monotonic() - started, base=base)
        # The engine answers an import only after it has stored the layer (tens of seconds on a busy host).
        with contextlib.closing(engine.connect(timeout=BUILD_API_TIMEOUT_S)) as build_client:
            log = _build(build_client, recipe, inputs, key, tag, rebuild)
    return ImageInfo(tag, key, built=True, seconds=time.monotonic() - started, log=log, base=base)


def _build(client: docker.DockerClient, recipe: Recipe, inputs: dict[str, object], key: str, tag: str,
           rebuild_base: bool = False) -> list[str]:
    """Base layer (rootfs, closure, import; skipped when cached), the environment's layer on top, smoke test,
    final tags, prune; returns the build log. A base is tagged only once an image made from it passed."""
    log: list[str] = [f"why: {reason}" for reason in why_rebuild(inputs)]
    sweep_stale_layer_containers(client)
    sweep_stale_tmp_images(client, recipe)
    base_key = content_key(recipe, base_key_inputs(inputs))
    base_tag = image_tag(recipe, base_key, BASE_SUFFIX)
    tmp_tag = f"{recipe.repository}{TMP_SUFFIX}:sb{os.getpid()}-{key[:12]}"
    tmp_base = f"{recipe.repository}{TMP_SUFFIX}:sb{os.getpid()}-base-{base_key[:12]}"
    built_base = rebuild_base or not _exists(client, base_tag)
    try:
        if built_base:
            rootfs = ensure_rootfs(recipe, log)
            step = time.monotonic()
            payload = add_missing_libraries(python_payload(recipe), rootfs)
            log.append(f"closure: {len(payload.libs)} host libraries added, {len(payload.unresolved)} unresolved "
                       f"on the host too, in {time.monotonic() - step:.1f} s")
            step = time.monotonic()
            _import(client, recipe, base_key, rootfs, payload, tmp_base)
            log.append(f"import of the base layer: {time.monotonic() - step:.1f} s")
        else:
            log.append(f"base layer cached: {base_tag}")
        step = time.monotonic()
        _add_env_layer(client, key, tmp_base if built_base else base_tag, tmp_tag)
        log.append(f"environment layer: {time.monotonic() - step:.1f} s")
        step = time.monotonic()
        _smoke_test(client, recipe, tmp_tag)
        log.append(f"smoke test: {time.monotonic() - step:.1f} s")
        if built_base:
            client.images.get(tmp_base).tag(base_tag)
        client.images.get(tmp_tag).tag(tag)
    finally:
        _remove_quietly(client, tmp_tag)
        if built_base:
            _remove_quietly(client, tmp_base)
    _keys_file().write_text(json.dumps(inputs, sort_keys=True, indent=1))
    pruned = prune_other_images(client, keep=tag) + prune_other_bases(client, keep=base_tag)
    if pruned:
        log.append(f"removed older node images: {', '.join(pruned)}")
    return log


def _add_env_layer(client: docker.DockerClient, key: str, base: str, tmp_tag: str) -> None:
    """Commit the environment's own files on top of `base`: the venv's path as a symlink to IMAGE_VENV, and the
    files that name that path (bin/, pyvenv.cfg, editable installs) under IMAGE_VENV. A few MB, a few seconds."""
    import sys

    changes = [f"ENV PATH={Path(sys.prefix) / 'bin'}:{SYSTEM_PATH}",
               f"LABEL {engine.LABEL_IMAGE}={IMAGE_KIND_NODE}", f"LABEL {engine.LABEL_IMAGE_KEY}={key}",
               f"LABEL {engine.LABEL_IMAGE_ENV}={sys.prefix}", f'CMD ["{sys.executable}"]']
    # No owner labels: a commit copies the container's labels into the image, and every container of the image
    # would carry this builder's pid. A leftover of a killed build is swept by name (sweep_stale_layer_containers).
    container = client.containers.create(base, ["true"], network_mode="none",
                                         name=f"sb{os.getpid()}{_LAYER_NAME}{int(time.time())}")
    try:
        if not container.put_archive("/", env_layer_tar()):
            raise ImageBuildError("the engine refused the environment layer's files")
        repository, tag = tmp_tag.split(":", 1)
        container.commit(repository=repository, tag=tag, changes=changes)
    except ImageBuildError:
        raise
    except Exception as exc:
        raise ImageBuildError(f"committing the environment layer of the node image failed: {exc}") from exc
    finally:
        container.remove(force=True)


def env_layer_tar() -> bytes:
    """The top layer's tar (in memory: bin/ and a few small files): symlinks from the venv's path (as given and
    resolved) to IMAGE_VENV, then `env_specific_paths()` under IMAGE_VENV. Empty outside a venv."""
    import sys

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as out:
        if sys.prefix != sys.base_prefix:
            venv = Path(sys.prefix).resolve()
            for path in sorted({Path(os.path.abspath(sys.prefix)), venv}):
                info = tarfile.TarInfo(_arc(path))
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, str(IMAGE_VENV), 0o777
                out.addfile(info)
            for path in env_specific_paths():
                out.add(path, arcname=_arc(IMAGE_VENV / path.relative_to(venv)))
            # bin/python's links outside the venv (python3 -> python3.11) depend on how this venv was made; the
            # base has the interpreter's real file, from sys._base_executable.
            for path in symlink_chain(Path(sys.executable)):
                if path.is_symlink() and venv not in path.parents and Path(sys.prefix) not in path.parents:
                    out.add(path, arcname=_arc(path), recursive=False)
    return buffer.getvalue()


def _keys_file() -> Path:
    return cache_dir() / "last-image-key.json"


def why_rebuild(inputs: dict[str, object]) -> list[str]:
    """The key inputs that differ from the last build's (kept in the cache dir), for the build log."""
    try:
        previous = json.loads(_keys_file().read_text())
    except (OSError, ValueError):
        return ["no earlier build recorded in the cache"]
    return key_diff(previous, inputs) or ["forced rebuild (same key inputs)"]


def prune_other_bases(client: docker.DockerClient, keep: str) -> list[str]:
    """Remove base layers other than `keep` that no image is built on (the engine refuses to remove a parent of
    another image, another checkout's included, and refuses one a container uses)."""
    import docker

    kept_id = client.images.get(keep).id
    removed: list[str] = []
    for image in client.images.list(filters={"label": f"{engine.LABEL_IMAGE}={IMAGE_KIND_BASE}"}):
        if image.id == kept_id or image.labels.get(engine.LABEL_IMAGE) != IMAGE_KIND_BASE:
            continue  # (an image built on a base inherits its label filter match only if not overridden)
        try:
            client.images.remove(image.id, force=False)
            removed += image.tags or [image.short_id]
        except docker.errors.APIError:
            continue
    return removed


def prune_other_images(client: docker.DockerClient, keep: str, env: str | None = None) -> list[str]:
    """Remove this environment's node images other than `keep` that no container uses (each is a full
    ~2 GB layer: dependency changes must not pile them up). Images of other environments (another checkout
    or venv on the same engine; `env` is a sys.prefix) are theirs to keep. Images in use stay."""
    import sys

    import docker

    in_use = {c.attrs.get("Image") for c in client.containers.list(all=True)}
    kept_id = client.images.get(keep).id
    removed: list[str] = []
    filters = {"label": [f"{engine.LABEL_IMAGE}={IMAGE_KIND_NODE}", f"{engine.LABEL_IMAGE_ENV}={env or sys.prefix}"]}
    for image in client.images.list(filters=filters):
        if image.id == kept_id or image.id in in_use:
            continue
        try:
            client.images.remove(image.id, force=False)
            removed += image.tags or [image.short_id]
        except docker.errors.APIError:  # used by a container created meanwhile: leave it
            continue
    return removed


def _exists(client: docker.DockerClient, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _import(client: docker.DockerClient, recipe: Recipe, key: str, rootfs: Path, payload: Payload,
            tmp_tag: str) -> None:
    import sys

    changes = [f"ENV PATH={IMAGE_VENV / 'bin'}:{SYSTEM_PATH}"]
    changes += [f"ENV {name}={value}" for name, value in sorted(recipe.env.items())]
    changes += [f"LABEL {engine.LABEL_IMAGE}={IMAGE_KIND_BASE}", f"LABEL {engine.LABEL_IMAGE_KEY}={key}",
                "WORKDIR /", f'CMD ["{sys.base_prefix}/bin/python3"]']
    read_fd, write_fd = os.pipe()
    writer_error: list[BaseException] = []
    writer = threading.Thread(target=_write_tar, args=(write_fd, rootfs, payload, writer_error), daemon=True)
    writer.start()
    repository, tag = tmp_tag.split(":", 1)
    try:
        with os.fdopen(read_fd, "rb") as source:
            answer = client.api.import_image(src=_chunks(source), repository=repository, tag=tag,
                                             changes=changes, stream_src=True)
    except Exception as exc:
        _remove_quietly(client, tmp_tag)
        raise ImageBuildError(f"docker import of the node image failed: {exc}") from exc
    finally:
        writer.join()
    if writer_error:
        _remove_quietly(client, tmp_tag)
        raise ImageBuildError(f"writing the image tar stream failed: {writer_error[0]!r}") from writer_error[0]
    if "errorDetail" in str(answer) or not _exists(client, tmp_tag):
        _remove_quietly(client, tmp_tag)
        raise ImageBuildError(f"docker import did not produce {tmp_tag}: {str(answer)[:500]}")


def _chunks(source: Any) -> Iterator[bytes]:
    while True:
        chunk = source.read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _write_tar(fd: int, rootfs: Path, payload: Payload, errors: list[BaseException]) -> None:
    """Rootfs members, then parents of the payload, then the payload; closes `fd` (EOF for the reader)."""
    try:
        with os.fdopen(fd, "wb") as sink, tarfile.open(fileobj=sink, mode="w|") as out:
            with tarfile.open(rootfs, mode="r|") as base:
                for member in base:
                    out.addfile(member, base.extractfile(member) if member.isfile() else None)
            tree_roots = [tree.root for tree in payload.trees]
            files = [p for p in payload.files if not any(root in p.parents for root in tree_roots)]
            members = rootfs_members(rootfs)
            written: set[str] = set()
            for tree in payload.trees:
                if tree.arc_root is not None:
                    _add_dirs(out, tree.arc_root.parent, members, written)
            host_placed = [tree.root for tree in payload.trees if tree.arc_root is None]
            for path in host_placed + files + [real for real, _ in payload.libs]:
                _add_parents(out, path, members, written)
            for tree in payload.trees:
                out.add(tree.root, arcname=_arc(tree.arc_root or tree.root), filter=_tree_filter(tree))
            for path in files:  # files inside a tree are already in it
                out.add(path, arcname=_arc(path), recursive=False)
            for real, link in payload.libs:
                out.add(real, arcname=_arc(real), recursive=False)
                if link is not None:
                    info = tarfile.TarInfo(_arc(link))
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, real.name, 0o777
                    out.addfile(info)
    except BaseException as exc:  # reported by the caller; the reader sees a truncated stream
        errors.append(exc)
        try:
            os.close(fd)
        except OSError:
            pass


def _add_parents(out: tarfile.TarFile, path: Path, members: set[str], written: set[str]) -> None:
    """Directory entries (host metadata) for parents of `path` the rootfs does not have."""
    for parent in reversed(path.parents):
        arc = _arc(parent)
        if not arc or arc in members or arc in written or _through_rootfs_symlink(arc, members):
            continue
        out.add(parent, arcname=arc, recursive=False)
        written.add(arc)


def _add_dirs(out: tarfile.TarFile, path: Path, members: set[str], written: set[str]) -> None:
    """Directory entries (root, 0755) for `path` and its parents that the rootfs lacks: for image-only paths."""
    for parent in [*reversed(path.parents), path]:
        arc = _arc(parent)
        if not arc or arc in members or arc in written or _through_rootfs_symlink(arc, members):
            continue
        info = tarfile.TarInfo(arc)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        out.addfile(info)
        written.add(arc)


def _through_rootfs_symlink(arc: str, members: set[str]) -> bool:
    """Paths like lib/x86_64-linux-gnu exist in a merged-/usr rootfs through the `lib` symlink."""
    first = arc.split("/", 1)[0]
    return first in ("lib", "lib64", "bin", "sbin") and first in members


def _arc(path: Path) -> str:
    return str(path).lstrip("/")


def _tree_filter(tree: Tree) -> Any:
    arc_root = Path("/" + _arc(tree.arc_root or tree.root))

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        path = tree.root / Path("/" + info.name).relative_to(arc_root)
        if path != tree.root and tree.excluded(path):
            return None
        return info

    return keep


def _smoke_test(client: docker.DockerClient, recipe: Recipe, image: str) -> None:
    """Run the new image once: every smoke import must work and report the host's versions."""
    import importlib.metadata
    import sys

    check = (
        "import importlib, importlib.metadata as m, json, sys\n"
        "def version(name):\n"
        "    try: return m.version(name)\n"
        "    except m.PackageNotFoundError: return None\n"
        f"for name in {list(recipe.smoke_imports)!r}: importlib.import_module(name)\n"
        "print(json.dumps({'python': sys.version, 'tensorflow': version('tensorflow-cpu'),"
        " 'splitbed': version('splitbed')}))\n"
    )
    expected = {"python": sys.version, "tensorflow": _version("tensorflow-cpu"),
                "splitbed": importlib.metadata.version("splitbed")}
    container = client.containers.create(
        image, [sys.executable, "-c", check], network_mode="none", labels=engine.owner_labels("smoke"),
        volumes=[m.docker_bind() for m in default_mounts()], name=f"sb{os.getpid()}-smoke-{int(time.time())}",
        environment=dict(tfboot.QUIET_ENV),
    )
    try:
        container.start()
        try:
            status = container.wait(timeout=recipe.smoke_timeout_s)
        except Exception as exc:
            raise ImageBuildError(f"the new node image's smoke test did not finish in {recipe.smoke_timeout_s} s") \
                from exc
        out = container.logs(stdout=True, stderr=False).decode(errors="replace").strip()
        err = container.logs(stdout=False, stderr=True).decode(errors="replace").strip()
        if status.get("StatusCode") != 0:
            tail = "\n".join(err.splitlines()[-15:])
            raise ImageBuildError(f"the new node image fails its smoke test (exit {status.get('StatusCode')}); the "
                                  f"host's interpreter may need a newer C library than the rootfs has:\n{tail}")
        got = json.loads(out.splitlines()[-1])
        if got != expected:
            raise ImageBuildError(f"the new node image reports {got}, the host {expected}")
    finally:
        container.remove(force=True)


def _version(distribution: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _remove_quietly(client: docker.DockerClient, tag: str) -> None:
    import docker

    try:
        client.images.remove(tag, force=True)
    except docker.errors.ImageNotFound:
        pass


def sweep_stale_layer_containers(client: docker.DockerClient) -> list[str]:
    """Remove the (created, never started) containers of environment-layer commits whose builder is dead."""
    removed = []
    for container in client.containers.list(all=True, filters={"name": _LAYER_NAME}):
        match = _LAYER_RE.match(container.name or "")
        if match and not psutil.pid_exists(int(match.group(1))):
            container.remove(force=True)
            removed.append(container.name)
    return removed


def sweep_stale_tmp_images(client: docker.DockerClient, recipe: Recipe | None = None) -> list[str]:
    """Remove temporary build tags whose building process is dead."""
    recipe = recipe or load_recipe()
    removed = []
    for image in client.images.list(name=f"{recipe.repository}{TMP_SUFFIX}"):
        for tag in image.tags:
            match = _TMP_TAG_RE.match(tag.split(":", 1)[1])
            if match and not psutil.pid_exists(int(match.group(1))):
                _remove_quietly(client, tag)
                removed.append(tag)
    return removed


def list_images(client: docker.DockerClient) -> list[dict[str, Any]]:
    """Node images on this engine: tag, size, whether it matches the current environment's key."""
    recipe = load_recipe()
    current = image_tag(recipe)
    rows = []
    for image in client.images.list(filters={"label": f"{engine.LABEL_IMAGE}={IMAGE_KIND_NODE}"}):
        for tag in image.tags or ["<untagged>"]:
            rows.append({"tag": tag, "id": image.short_id, "size_bytes": image.attrs.get("Size"),
                         "created": image.attrs.get("Created"), "current": tag == current})
    return rows


def remove_images(client: docker.DockerClient, keep_current: bool = False) -> list[str]:
    """Remove node images and their base layers (all, or all but the current environment's); returns the removed
    tags/ids."""
    import docker

    removed = []
    recipe = load_recipe()
    for row in list_images(client):
        if keep_current and row["current"]:
            continue
        _remove_quietly(client, row["tag"] if row["tag"] != "<untagged>" else row["id"])
        removed.append(row["tag"])
    removed += sweep_stale_tmp_images(client, recipe)
    keep = {image_tag(recipe, content_key(recipe, base_key_inputs(key_inputs(recipe))), BASE_SUFFIX)} \
        if keep_current else set()
    for image in client.images.list(filters={"label": f"{engine.LABEL_IMAGE}={IMAGE_KIND_BASE}"}):
        tags = [t for t in image.tags if t not in keep]
        if image.labels.get(engine.LABEL_IMAGE) == IMAGE_KIND_BASE and tags and len(tags) == len(image.tags):
            try:
                _remove_quietly(client, image.id)
                removed += tags
            except docker.errors.APIError:  # another environment's node image is built on it
                continue
    return removed
