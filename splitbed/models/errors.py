"""Exceptions of splitbed.models: each says what was wrong and what to do, so a sweep log is enough to fix it."""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error raised by splitbed.models."""


class UnknownModelError(ModelError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class UnknownPartitionError(ModelError, KeyError):
    """A partition id or name that is not among the model's candidates."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PartitionDataError(ModelError):
    """A partition data file (splitbed/models/data/<model>.toml) that is malformed."""


class WeightsError(ModelError):
    """Weights that cannot be resolved or loaded: bad spec, missing or corrupt file, wrong architecture."""


class ImageError(ModelError):
    """An input image that cannot be read, decoded or used."""


class GraphCutError(ModelError):
    """A partition that cannot be cut out of the Keras graph (e.g. a layer called more than once)."""
