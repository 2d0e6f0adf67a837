"""Exceptions of the node runtimes (process and docker).

One base, `NodeRuntimeError`, so callers catch the package with one clause; each message says what was wrong
and what to do about it.
"""

from __future__ import annotations


class NodeRuntimeError(Exception):
    """Base of every error raised by splitbed.runtime."""


class LimitError(NodeRuntimeError, ValueError):
    """A CPU or memory limit is malformed, out of range, or cannot be applied by the chosen runtime."""


class EngineUnavailableError(NodeRuntimeError):
    """No Docker engine answers (not installed, not started, or no permission on its socket)."""


class ImageBuildError(NodeRuntimeError):
    """The node image could not be built (debootstrap, library closure, import or smoke test failed)."""


class NodeStartError(NodeRuntimeError):
    """A node could not be started (bad side, missing namespace, container create/start refused)."""
