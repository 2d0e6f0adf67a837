"""The node image: a Debian rootfs (debootstrap, cached) plus this host's interpreter and environment, imported
into the local Docker engine under a content-keyed tag. No registry is involved."""

from __future__ import annotations

from splitbed.runtime.image.build import (
    ImageInfo,
    ensure_image,
    list_images,
    remove_images,
    sweep_stale_tmp_images,
)

__all__ = ["ImageInfo", "ensure_image", "list_images", "remove_images", "sweep_stale_tmp_images"]
