"""The plugin's command-line options: namespaced (`--splitbed-...`), with a short alias only where no other
plugin we know of uses the name (`--profile` belongs to pytest-profiling, so the link profile's short form is
`--link-profile`), and checked at start-up, so that a typo is a usage error naming the valid values instead of a
run that selects nothing and passes.

Read an option with `value(config, "model")` (the dest names are `splitbed_<name>`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class Option:
    name: str  # dest: splitbed_<name>
    aliases: tuple[str, ...]  # short forms, used only when no other plugin registered them
    help: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def long(self) -> str:
        return f"--splitbed-{self.name.replace('_', '-')}"

    @property
    def dest(self) -> str:
        return f"splitbed_{self.name}"


OPTIONS = (
    Option("model", ("--model",), "only these models (repeatable)", {"action": "append", "default": []}),
    Option("profile", ("--link-profile",), "only these link profiles (repeatable; names or .toml paths)",
           {"action": "append", "default": []}),
    Option("ue_device", ("--ue-device",), "UE device profile(s) the suite's testbeds emulate (repeatable; "
           "built-in names, `splitbed devices`; default phone-midrange; host = no emulation)",
           {"action": "append", "default": []}),
    Option("backend", ("--backend",), "link emulation backend",
           {"default": "auto", "choices": ["auto", "kernel", "userspace"]}),
    Option("transport", ("--transport",), "the sessions' transport binding: tcp or quic (aioquic; docs/PROTOCOL.md "
           "section 8)", {"default": "tcp", "choices": ["tcp", "quic"]}),
    Option("full", ("--full",), "run slow tests and the full model x partition x profile matrix",
           {"action": "store_true", "default": False}),
    Option("weights", ("--weights",), "node weights: auto (Keras cache's ImageNet file, else random:0), "
           "imagenet, random:SEED, or a weights file", {"default": "auto"}),
    Option("results_dir", ("--results-dir",), "where failing network tests keep pcaps, records and logs (and the "
           "budget table goes)", {"default": "results/suite"}),
    Option("keep_results", ("--keep-results",), "keep every test's results folder, also when it passes",
           {"action": "store_true", "default": False}),
)


def taken_names(parser: pytest.Parser) -> set[str]:
    """Option strings other plugins registered before us (pytest has no public API for this: best effort)."""
    names: set[str] = set()
    groups = [*getattr(parser, "_groups", []), getattr(parser, "_anonymous", None)]
    for group in groups:
        for option in getattr(group, "options", []) if group is not None else []:
            names.update(option.names())
    return names


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("splitbed", "splitbed (split inference over emulated links)")
    taken = taken_names(parser)
    for option in OPTIONS:
        aliases = [a for a in option.aliases if a not in taken]
        group.addoption(option.long, *aliases, dest=option.dest, help=option.help, **option.kwargs)


def value(config: pytest.Config, name: str) -> Any:
    return config.getoption(f"splitbed_{name}")


def flag(name: str) -> str:
    """How messages name an option: its namespaced form."""
    return next(o.long for o in OPTIONS if o.name == name)


def check(config: pytest.Config) -> None:
    """Refuse unknown models, profiles, UE devices and weights at start-up (pytest.UsageError: exit status 4)."""
    from netem.profile import builtin_names
    from splitbed.models import registry

    models = registry.names()
    unknown = [m for m in value(config, "model") if m not in models]
    if unknown:
        raise pytest.UsageError(f"{flag('model')} {', '.join(map(repr, unknown))}: no such model; registered: "
                                f"{', '.join(models)}")
    profiles = builtin_names()
    bad = [p for p in value(config, "profile") if p not in profiles and not Path(p).is_file()]
    if bad:
        raise pytest.UsageError(f"{flag('profile')} {', '.join(map(repr, bad))}: no such link profile; built-in: "
                                f"{', '.join(profiles)} (or a .toml path)")
    from splitbed.plugin.matrix import MatrixError, check_ue_devices

    try:
        check_ue_devices(value(config, "ue_device"))
    except MatrixError as exc:
        raise pytest.UsageError(str(exc)) from None
    from splitbed.models.errors import WeightsError
    from splitbed.models.weights import check_spec

    try:
        check_spec(value(config, "weights"))
    except WeightsError as exc:
        raise pytest.UsageError(f"{flag('weights')}: {exc}") from None
