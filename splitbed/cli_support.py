"""What the `splitbed` command line adds to netem.cliapp: which library errors are bad input (exit 2, one line
with the fix) and which are failures while working (exit 1, one line), and the random-weights warning said once
per command, in one wording. Importing this module imports no TensorFlow (the classes live in light modules)."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from netem.cliapp import ErrorPolicy
from netem.errors import NetemError, ProfileError
from splitbed.format.errors import FormatError
from splitbed.models.errors import ModelError, UnknownModelError, UnknownPartitionError, WeightsError
from splitbed.models.weights import RandomWeightsWarning
from splitbed.nodes.errors import ConfigurationError, NodeError
from splitbed.sweep.plan import DeprecatedNameWarning

MODELS_FIX = "list the models with 'splitbed partitions' and a model's partitions with 'splitbed partitions MODEL'"

USAGE_ERRORS: dict[type[BaseException], str | Callable[[BaseException], str]] = {
    ProfileError: "list the built-in profiles with 'netem profiles'; a profile file's keys are in docs/PROFILES.md",
    UnknownModelError: MODELS_FIX,
    UnknownPartitionError: MODELS_FIX,
    WeightsError: "weights are auto, imagenet, random:SEED (an integer) or a Keras weights file (docs/MODELS.md)",
    ConfigurationError: "see docs/PROTOCOL.md for the job fields and their values",
}
"""Bad input found by the libraries; commands that know better raise netem.cliapp.CliError themselves."""

FAILURES: tuple[type[BaseException], ...] = (NetemError, NodeError, ModelError, FormatError)
"""Errors while working (a link that fails to build, a node that dies): one line, exit status 1."""

WEIGHTS_LOGGER = "splitbed.models.weights"
LOG_LEVELS = ("debug", "info", "warning", "error")


def log_level(text: str) -> int:
    """`--log-level`'s value as a logging level; a typo is refused (it would silently log at the default)."""
    from netem.cliapp import CliError

    if text.lower() not in LOG_LEVELS:
        raise CliError(f"unknown log level {text!r}", f"use one of {', '.join(LOG_LEVELS)}")
    return int(getattr(logging, text.upper()))


@contextlib.contextmanager
def random_weights_said_once(prog: str = "splitbed") -> Iterator[None]:
    """While a command runs, a RandomWeightsWarning (one per model loaded, plus its log record) becomes one
    line, `PROG: warning: RANDOM WEIGHTS ...`, printed the first time only; an old name still accepted
    (DeprecatedNameWarning) one line `PROG: note: ...`; other warnings are shown as usual."""
    shown: list[str] = []
    notes: list[str] = []
    previous = warnings.showwarning
    weights_log = logging.getLogger(WEIGHTS_LOGGER)
    previous_level = weights_log.level

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if issubclass(category, DeprecatedNameWarning):
            if str(message) not in notes:
                notes.append(str(message))
                print(f"{prog}: note: {message}", file=sys.stderr, flush=True)
            return
        if not issubclass(category, RandomWeightsWarning):
            previous(message, category, filename, lineno, file, line)
            return
        if shown:
            return
        text = str(message)
        text = text[text.index("RANDOM WEIGHTS"):] if "RANDOM WEIGHTS" in text else text  # drop "model: "
        shown.append(text)
        print(f"{prog}: warning: {text}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always", RandomWeightsWarning)
        warnings.simplefilter("always", DeprecatedNameWarning)
        warnings.showwarning = show
        weights_log.setLevel(logging.ERROR)  # the same news as the warning: said once, above
        try:
            yield
        finally:
            weights_log.setLevel(previous_level)


POLICY = ErrorPolicy(USAGE_ERRORS, FAILURES, around=random_weights_said_once)
"""The error policy of every `splitbed` command (netem.cliapp)."""
