"""`splitbed docker-image`: show, build or remove the container node image (docs/DOCKER.md)."""

from __future__ import annotations

import shutil

import typer

from netem.cliapp import CliError


def docker_image(
    build: bool = typer.Option(False, "--build", help="build the image now if it is not cached"),
    rebuild: bool = typer.Option(False, "--rebuild", help="build it again even if cached"),
    remove: bool = typer.Option(False, "--remove", help="remove every splitbed node image from the engine"),
    remove_cache: bool = typer.Option(False, "--remove-cache",
                                      help="also delete the cached rootfs tarball (~/.cache/splitbed/docker)"),
) -> None:
    """Status of the node image for this environment; --build/--rebuild it, --remove it (and --remove-cache)."""
    from docker.errors import DockerException
    from requests import RequestException
    from rich.console import Console
    from rich.table import Table

    from splitbed.runtime import NodeRuntimeError
    from splitbed.runtime.engine import connect
    from splitbed.runtime.image import ensure_image, list_images, remove_images
    from splitbed.runtime.image.build import BUILD_API_TIMEOUT_S, why_rebuild
    from splitbed.runtime.image.key import image_tag, key_inputs
    from splitbed.runtime.image.recipe import cache_dir, load_recipe
    from splitbed.runtime.image.rootfs import rootfs_path

    console = Console()
    try:
        client = connect(timeout=BUILD_API_TIMEOUT_S)
        if remove or remove_cache:
            removed = remove_images(client) if remove else []
            console.print(f"removed images: {', '.join(removed) or 'none'}")
            if remove_cache:
                shutil.rmtree(cache_dir(), ignore_errors=True)
                console.print(f"removed the build cache {cache_dir()}")
            return
        if build or rebuild:
            info = ensure_image(client, rebuild=rebuild)
            verb = "built" if info.built else "cached"
            console.print(f"{verb}: {info.tag} in {info.seconds:.1f} s")
            for line in info.log:
                console.print(f"  {line}")
        recipe = load_recipe()
        table = Table(title=f"splitbed node images (this environment: {image_tag(recipe)})")
        for column in ("tag", "id", "size", "created", "current"):
            table.add_column(column)
        for row in list_images(client):
            size = f"{row['size_bytes'] / 1e9:.2f} GB" if row["size_bytes"] else "?"
            table.add_row(row["tag"], row["id"], size, str(row["created"])[:19], "yes" if row["current"] else "")
        console.print(table)
        if not any(row["current"] for row in list_images(client)):
            console.print("the image for this environment is not built yet; the next docker run builds it. Why:")
            for reason in why_rebuild(key_inputs(recipe)):
                console.print(f"  {reason}")
        rootfs = rootfs_path(recipe)
        console.print(f"rootfs cache: {rootfs} ({'present' if rootfs.is_file() else 'absent: next build runs debootstrap'})")
    except (NodeRuntimeError, DockerException, RequestException) as exc:
        raise CliError(str(exc), "check the engine with 'splitbed doctor' (docs/DOCKER.md)", status=1) from None


def register(app: typer.Typer) -> None:
    app.command("docker-image")(docker_image)
