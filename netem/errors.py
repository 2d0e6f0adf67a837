"""Exceptions of the netem package.

Every failure netem reports is a `NetemError` subclass whose message says what was wrong and what to do, so a
caller can catch the whole package with one clause and a user can act on the text alone.
"""

from __future__ import annotations


class NetemError(Exception):
    """Base of every error raised by netem."""


class ProfileError(NetemError, ValueError):
    """A link profile (TOML file or dict) is malformed or has a value outside its allowed range."""


class ProfileNotFoundError(ProfileError, LookupError):
    """No built-in profile has that name and no file exists at that path."""


class TraceError(NetemError, ValueError):
    """A trace file is missing, too large or malformed."""


class TopologyError(NetemError):
    """Building, changing or tearing down the namespaces and veths failed."""


class NamespaceError(TopologyError):
    """A network namespace could not be created, entered or removed."""


class BackendUnavailableError(NetemError):
    """The requested link backend cannot run on this host (e.g. the kernel lacks sch_netem)."""


class UnsupportedProfileError(NetemError):
    """The chosen backend cannot emulate something this profile asks for (e.g. a trace on the kernel backend)."""


class LinkError(NetemError):
    """The userspace link process failed, died or answered its control channel wrongly."""


class CaptureError(NetemError):
    """A packet capture could not be started, stopped or read."""
