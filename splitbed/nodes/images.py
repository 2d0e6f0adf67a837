"""Input images for the local node: a file path, or `builtin:NAME` for one of scikit-image's bundled photos
(offline; `builtin:chelsea` is a cat), written once as a JPEG file so that the testbed contribution's "input data size" is a
real file's size, as for any user image."""

from __future__ import annotations

import os
from pathlib import Path

from splitbed.models import cachedirs
from splitbed.nodes.errors import ConfigurationError

BUILTIN_PREFIX = "builtin:"
BUILTIN_IMAGES = ("chelsea", "astronaut", "coffee", "rocket")
JPEG_QUALITY = 90


def cache_dir() -> Path:
    """Where the built-in images' JPEG files are written (splitbed.models.cachedirs: the one cache rule)."""
    return cachedirs.cache_dir("images")


#: Largest image file a node reads (a 24-megapixel JPEG is ~10 MB).
MAX_IMAGE_FILE_BYTES = 64 << 20


def check_image(image: str) -> None:
    """ConfigurationError unless `image` is a builtin name or a readable image file (PIL identifies its format
    from the header; nothing of the file is ever quoted back). For validating jobs and scenarios early."""
    if image.startswith(BUILTIN_PREFIX):
        if image[len(BUILTIN_PREFIX):] not in BUILTIN_IMAGES:
            raise ConfigurationError(f"unknown builtin image {image!r}; builtin: {', '.join(BUILTIN_IMAGES)}")
        return
    path = Path(image).expanduser()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigurationError(f"image {image!r}: {exc.strerror or 'cannot be read'} (give an image file or "
                                 f"builtin:NAME, NAME one of {', '.join(BUILTIN_IMAGES)})") from None
    if not path.is_file():
        raise ConfigurationError(f"image {image!r} is not a regular file")
    if size > MAX_IMAGE_FILE_BYTES:
        raise ConfigurationError(f"image {image!r} is {size} bytes; at most {MAX_IMAGE_FILE_BYTES} are read")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            kind = img.format
    except (UnidentifiedImageError, OSError, ValueError):
        kind = None
    if not kind:
        raise ConfigurationError(f"image {image!r} is not an image file PIL can read (JPEG, PNG, ...)")


def resolve_image(image: str) -> Path:
    """The file to read for `image`; builtin images are materialised on first use."""
    if not image.startswith(BUILTIN_PREFIX):
        return Path(image)
    name = image[len(BUILTIN_PREFIX):]
    if name not in BUILTIN_IMAGES:
        raise ConfigurationError(f"unknown builtin image {name!r}; builtin: {', '.join(BUILTIN_IMAGES)}")
    path = cache_dir() / f"{name}-q{JPEG_QUALITY}.jpg"
    if not path.exists():
        import skimage.data
        from PIL import Image

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(tmp, format="JPEG",
                                                                          quality=JPEG_QUALITY)
        tmp.replace(path)  # atomic: concurrent nodes never read a half-written file
    return path
