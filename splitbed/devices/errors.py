"""Exceptions of splitbed.devices: each message says what was wrong and what to do."""

from __future__ import annotations


class DeviceError(ValueError):
    """A device profile that does not exist, is malformed, or cannot serve what was asked of it."""


class DeviceNotFoundError(DeviceError):
    """A name that is neither a built-in device profile nor a readable TOML file."""
