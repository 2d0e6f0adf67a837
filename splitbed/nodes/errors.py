"""Errors of the inference nodes. Every message says what was wrong and, where it helps, what to do."""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error raised by splitbed.nodes."""


class ProtocolError(NodeError):
    """The peer broke the session protocol (docs/PROTOCOL.md). `code` is the stable name sent in error replies."""

    def __init__(self, code: str, message: str, *, fatal: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fatal = fatal


class NodeTimeout(ProtocolError):
    """A read or a whole unit did not complete within its deadline."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message, fatal=True)


class PeerClosed(NodeError):
    """The peer closed the connection (cleanly or not) while we expected more bytes."""


class RemoteError(NodeError):
    """The remote node answered with an error reply; `code`, `message`, `fatal` and `aips_events` come from it."""

    def __init__(self, code: str, message: str, *, fatal: bool, aips_events: list[dict[str, object]]) -> None:
        super().__init__(f"remote node error {code}: {message}")
        self.code = code
        self.message = message
        self.fatal = fatal
        self.aips_events = aips_events


class ConfigurationError(NodeError):
    """A job, option or configuration-stage choice that cannot work (unknown model, weights mismatch, ...)."""
