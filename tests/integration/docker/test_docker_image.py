"""The node image: cached by content key, holding this host's interpreter and environment, and the sweeps that
keep failed or superseded builds from piling up (real engine, real mounts, real tar imports)."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import tarfile
from typing import Any

import psutil
import pytest

from splitbed.runtime.engine import LABEL_IMAGE, LABEL_IMAGE_ENV, LABEL_IMAGE_KEY, LABEL_OWNER, owner_labels
from splitbed.runtime.image import ensure_image, sweep_stale_tmp_images
from splitbed.runtime.image.build import IMAGE_KIND_NODE, prune_other_images
from splitbed.runtime.image.recipe import cache_dir, load_recipe
from splitbed.runtime.image.rootfs import rootfs_path, sweep_stale_tmp
from splitbed.runtime.mounts import default_mounts

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.timeout(1200)]  # may build the image first


def dead_pid() -> int:
    """A pid no process has now (for leftovers of a 'crashed' owner)."""
    return next(pid for pid in itertools.count(4_000_000, -7919) if not psutil.pid_exists(pid))


def test_cached_image_is_found_by_its_key(node_image: Any, docker_client: Any) -> None:
    again = ensure_image(docker_client)
    assert (again.tag, again.key, again.built) == (node_image.tag, node_image.key, False)
    image = docker_client.images.get(again.tag)
    assert image.labels[LABEL_IMAGE] == IMAGE_KIND_NODE and image.labels[LABEL_IMAGE_KEY] == again.key
    assert image.labels[LABEL_IMAGE_ENV] == sys.prefix
    assert again.tag.endswith(again.key[:12])
    assert rootfs_path(load_recipe()).is_file()  # the debootstrap tarball stays cached for the next build
    assert not docker_client.images.list(name=f"{load_recipe().repository}-tmp")


def test_image_runs_this_hosts_interpreter_and_environment(node_image: Any, docker_client: Any) -> None:
    probe = ("import json, sys, numpy, zstandard, splitbed\nfrom splitbed import envlock\n"
             "print(json.dumps({'exe': sys.executable, 'version': sys.version, 'numpy': numpy.__version__,"
             " 'zstd': zstandard.__version__, 'splitbed_file': splitbed.__file__, 'prefix': sys.prefix,"
             " 'lock': envlock.status()}))")
    out = docker_client.containers.run(node_image.tag, [sys.executable, "-c", probe], network_mode="none",
                                       remove=True, labels=owner_labels("probe"),
                                       volumes=[m.docker_bind() for m in default_mounts()])
    import numpy
    import zstandard

    import splitbed
    from splitbed import envlock

    seen = json.loads(out)
    # the lock is mounted too: a container node's records say whether its (copied) venv is the locked one
    assert seen == {"exe": sys.executable, "version": sys.version, "numpy": numpy.__version__,
                    "zstd": zstandard.__version__, "splitbed_file": splitbed.__file__, "prefix": sys.prefix,
                    "lock": envlock.status()}
    assert seen["lock"]["lock_sha256"]


def _tiny_image(client: Any, tag: str, labels: dict[str, str]) -> Any:
    """Import a one-file image (a stand-in for an old or half-built node image)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("marker")
        data = tag.encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    repository, name = tag.split(":")
    client.api.import_image(src=buffer.getvalue(), repository=repository, tag=name,
                            changes=[f"LABEL {k}={v}" for k, v in labels.items()])
    return client.images.get(tag)


def test_dead_builders_temporary_tags_are_swept(docker_client: Any) -> None:
    recipe = load_recipe()
    mine = _tiny_image(docker_client, f"{recipe.repository}-tmp:sb{os.getpid()}-test", {})
    stale_tag = f"{recipe.repository}-tmp:sb{dead_pid()}-test"
    stale = _tiny_image(docker_client, stale_tag, {})
    try:
        removed = sweep_stale_tmp_images(docker_client, recipe)
        assert stale_tag in removed
        assert stale_tag not in {t for i in docker_client.images.list() for t in i.tags}
        assert docker_client.images.get(mine.id)  # a live builder's temporary tag stays
    finally:
        for image in (mine, stale):
            try:
                docker_client.images.remove(image.id, force=True)
            except Exception:
                pass


def test_superseded_node_images_are_pruned_unless_in_use(node_image: Any, docker_client: Any) -> None:
    labels = {LABEL_IMAGE: IMAGE_KIND_NODE, LABEL_IMAGE_KEY: "old", LABEL_IMAGE_ENV: sys.prefix}
    repository = load_recipe().repository
    old = _tiny_image(docker_client, f"{repository}:test-old-{os.getpid()}", labels)
    used = _tiny_image(docker_client, f"{repository}:test-used-{os.getpid()}", labels)
    other_env = _tiny_image(docker_client, f"{repository}:test-other-env-{os.getpid()}",
                            {**labels, LABEL_IMAGE_ENV: "/elsewhere/.venv"})
    holder = docker_client.containers.create(used.id, ["/marker"], labels=owner_labels("holder"),
                                             network_mode="none")
    try:
        removed = prune_other_images(docker_client, keep=node_image.tag)
        ids = {image.id for image in docker_client.images.list(all=True)}
        assert old.id not in ids and any(t.endswith(f"test-old-{os.getpid()}") for t in removed)
        assert used.id in ids  # a container still uses it
        assert other_env.id in ids  # another checkout's environment keeps its image
        assert docker_client.images.get(node_image.tag)
    finally:
        holder.remove(force=True)
        for image in (old, used, other_env):
            try:
                docker_client.images.remove(image.id, force=True)
            except Exception:
                pass


def test_crashed_rootfs_build_tree_is_unmounted_and_removed() -> None:
    """debootstrap mounts proc/sys inside its tree; a killed build leaves them mounted."""
    tree = cache_dir() / f"tmp-sb{dead_pid()}-rootfs"
    mountpoint = tree / "root" / "proc"
    mountpoint.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "sbtest", str(mountpoint)], check=True)
    try:
        (mountpoint / "inside-the-mount").write_text("x")
        assert tree in sweep_stale_tmp()
        assert not tree.exists()
        assert str(mountpoint) not in {p.mountpoint for p in psutil.disk_partitions(all=True)}
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(tree)], check=False)


def test_cli_shows_the_current_image_and_a_build_finds_it_cached(node_image: Any) -> None:
    """`splitbed docker-image` as users run it: the status table marks this environment's image current, and
    `--build` reuses it instead of building again."""
    from typer.testing import CliRunner

    from splitbed.cli import app

    status = CliRunner().invoke(app, ["docker-image"])
    assert status.exit_code == 0, status.output
    assert node_image.tag in " ".join(status.output.split()) and "rootfs cache:" in status.output
    assert "not built yet" not in status.output
    build = CliRunner().invoke(app, ["docker-image", "--build"])
    assert build.exit_code == 0, build.output
    assert f"cached: {node_image.tag}" in " ".join(build.output.split())


def test_the_venv_is_in_a_shared_base_and_only_its_paths_in_the_top_layer(node_image: Any, docker_client: Any) -> None:
    """The base layer holds the venv at IMAGE_VENV and nothing that names this venv's path (so another checkout with
    the same distributions reuses it); the node image adds a few MB on top: the symlink and the path-naming files."""
    from splitbed.runtime.image.build import IMAGE_KIND_BASE
    from splitbed.runtime.image.closure import IMAGE_VENV

    base, node = docker_client.images.get(node_image.base), docker_client.images.get(node_image.tag)
    assert base.labels[LABEL_IMAGE] == IMAGE_KIND_BASE and LABEL_IMAGE_ENV not in base.labels
    assert node.history()[1]["Id"] == base.id  # built directly on the base
    assert LABEL_OWNER not in node.labels  # else every container of the image would name the builder as owner
    assert node.attrs["Size"] - base.attrs["Size"] < 100_000_000 < base.attrs["Size"]
    probe = (f"import os, sys; print(os.path.exists({sys.prefix!r}), os.path.isdir({str(IMAGE_VENV / 'lib')!r}),"
             f" os.path.exists({str(IMAGE_VENV / 'pyvenv.cfg')!r}), os.path.exists({str(IMAGE_VENV / 'bin')!r}))")
    python = f"{sys.base_prefix}/bin/python3"  # the base has the interpreter, not the venv's bin/
    out = docker_client.containers.run(base.id, [python, "-c", probe], network_mode="none", remove=True,
                                       labels=owner_labels("probe"))
    assert out.decode().split() == ["False", "True", "False", "False"]
    link = docker_client.containers.run(node.id, ["readlink", sys.prefix], network_mode="none", remove=True,
                                        labels=owner_labels("probe"))
    assert link.decode().strip() == str(IMAGE_VENV)


def test_a_dead_builders_layer_container_is_swept(docker_client: Any) -> None:
    from splitbed.runtime.image.build import sweep_stale_layer_containers

    image = _tiny_image(docker_client, f"{load_recipe().repository}-tmp:sb{os.getpid()}-layertest", {})
    dead = docker_client.containers.create(image.id, ["/marker"], name=f"sb{dead_pid()}-layer-1", network_mode="none")
    live = docker_client.containers.create(image.id, ["/marker"], name=f"sb{os.getpid()}-layer-1", network_mode="none")
    try:
        assert sweep_stale_layer_containers(docker_client) == [dead.name]
        names = {c.name for c in docker_client.containers.list(all=True)}
        assert dead.name not in names and live.name in names
    finally:
        for container in (dead, live):
            try:
                container.remove(force=True)
            except Exception:
                pass
        docker_client.images.remove(image.id, force=True)
