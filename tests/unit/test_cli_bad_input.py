"""Bad input to any command of either CLI: one line on stderr, `PROG CMD: error: WHAT; fix: HOW`, exit status 2,
nothing built (no namespace left behind) and no traceback.

The commands are walked from the typer apps themselves, and the kinds of bad input come from each command's
parameters (their types and names), so a command added later is covered without touching this file."""

from __future__ import annotations

import os
import re
import signal
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

import netem.cli
import splitbed.cli
from netem.netns import list_namespaces

CLIS = {"splitbed": splitbed.cli, "netem": netem.cli}
ERROR_LINE = re.compile(r"^(?P<where>[a-z][\w -]*): error: (?P<what>.+); fix: (?P<fix>.+)$")

#: Options whose value names something that must exist (a model, a profile, ...): a typo must be refused.
NAME_OPTIONS = {"--direction", "--model", "--profile", "--partition", "--encoding", "--compression", "--weights", "--backend",
                "--runtime", "--image", "--budget", "--budgets", "--log-level", "--result-mode", "--aips", "--preload",
                "--uplink-only", "--scenario", "--device", "--ue-device", "--edge-device", "--objective",
                "--workload"}
NAME_ARGUMENTS = {"model", "scenario", "device"}
#: Options and arguments that name a file to read, or a file to write in an existing folder (not --out: a
#: results folder is created with its parents).
PATH_NAMES = {"--jobs", "--json", "--output", "--capture", "--report", "--log", "--budgets", "results",
              "path", "log"}


def leaves(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    subs = getattr(command, "commands", None)
    if subs is None:
        yield path, command
        return
    yield path, command  # the group itself: an unknown sub-command
    for name, sub in subs.items():
        yield from leaves(sub, [*path, name])


def annotation(param: Any) -> Any:
    hint = param.type_descriptor.annotation
    args = typing.get_args(hint)
    return args[0] if typing.get_origin(hint) in (list, tuple) and args else hint


def valid_required(command: Any, tmp_path: Path) -> list[str]:
    """Valid values for the required parameters (so that the bad one is what gets refused)."""
    stream = tmp_path / "stream.bin"
    stream.write_bytes(b"")
    values = {"--connect": "127.0.0.1:9", "--model": "mobilenet_v2", "--profile": "ideal", "--out": str(tmp_path),
              "scenario": "outage-3s", "results": str(tmp_path), "path": str(stream)}
    argv: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        name = param.opts[0]
        value = values.get(name) or (str(stream) if annotation(param) is Path else None)
        assert value is not None, f"add a valid value for the required {name!r} to this test"
        argv += [value] if param.param_type_name == "argument" else [name, value]
    return argv


def variadic_tail(command: Any) -> list[str]:
    """A command taking a program to run (netem shell) gets a harmless one after '--'."""
    return ["--", "true"] if any(p.param_type_name == "argument" and p.nargs == -1 for p in command.params) else []


def without(argv: list[str], option: str) -> list[str]:
    if option in argv:
        i = argv.index(option)
        return argv[:i] + argv[i + 2:]
    return argv


def bad_inputs(path: list[str], command: Any, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """(kind, argv) for every kind of bad input this command can be given."""
    if getattr(command, "commands", None) is not None:
        yield "unknown command", [*path[1:], "no-such-command"]
        return
    required = valid_required(command, tmp_path)
    tail = variadic_tail(command)
    yield "unknown option", [*path[1:], *required, "--no-such-option", *tail]
    positional = [p for p in command.params if p.param_type_name == "argument"]
    if not any(p.nargs == -1 for p in positional):
        fillers = [] if any(p.required for p in positional) else ["x"] * len(positional)
        yield "extra argument", [*path[1:], *required, *fillers, "extra-1", "extra-2"]
    if any(p.required for p in command.params):
        yield "missing required", [*path[1:], *tail]
    for param in command.params:
        name = param.opts[0]
        if param.param_type_name == "argument":
            if name in NAME_ARGUMENTS and param.nargs == 1:
                yield f"unknown name for {name}", [*path[1:], *_replace_argument(command, required, name,
                                                                                  "no-such-name"), *tail]
            elif name in PATH_NAMES:
                yield f"missing file for {name}", [*path[1:], *_replace_argument(
                    command, required, name, str(tmp_path / "no" / "such" / "file")), *tail]
            continue
        if getattr(param, "is_flag", False):
            continue
        kind = annotation(param)
        base = [*path[1:], *without(required, name)]
        if kind in (int, float):
            yield f"wrong type for {name}", [*base, name, "not-a-number", *tail]
        if name in PATH_NAMES or kind is Path:
            yield f"missing folder for {name}", [*base, name, str(tmp_path / "no" / "such" / "file"), *tail]
        elif name in NAME_OPTIONS:
            yield f"unknown name for {name}", [*base, name, "no-such-name", *tail]


def _replace_argument(command: Any, required: list[str], name: str, value: str) -> list[str]:
    """`required` with the positional argument `name` set to `value` (added when it was optional)."""
    out, index = [], 0
    positional = [p for p in command.params if p.param_type_name == "argument"]
    replaced = False
    for param in command.params:
        if not param.required:
            continue
        if param.param_type_name == "argument":
            out.append(value if param.opts[0] == name else required[index])
            replaced |= param.opts[0] == name
            index += 1
        else:
            out += required[index:index + 2]
            index += 2
    if not replaced:
        ahead = [p for p in positional if p.opts[0] != name and p.required]
        assert not ahead, "optional argument after required ones: extend this test"
        out.append(value)
    return out


SECONDS_PER_CASE = 60


class _Stuck(BaseException):
    """Raised by SIGALRM in a command that did not refuse its bad input."""


def _stuck(signum: int, frame: object) -> None:
    raise _Stuck()


def test_every_command_of_both_clis_refuses_bad_input_in_one_line_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a command that wrongly went ahead would write here, not in the repository
    monkeypatch.setenv("SPLITBED_OFFLINE", "1")
    previous = signal.signal(signal.SIGALRM, _stuck)
    ours = f"sb{os.getpid()}-"  # other processes (parallel runs) may make namespaces meanwhile
    namespaces = {n for n in list_namespaces() if n.startswith(ours)}
    covered: dict[str, set[str]] = {}
    problems: list[str] = []
    for prog, module in CLIS.items():
        for path, command in leaves(typer.main.get_command(module.app), [prog]):
            for kind, argv in bad_inputs(path, command, tmp_path):
                signal.alarm(SECONDS_PER_CASE)  # a command that went ahead with bad input must not hang the suite
                try:
                    status = module.main(argv)
                except _Stuck:
                    status = -1
                except Exception as exc:  # noqa: BLE001 - reported with the others below
                    status = -2
                    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
                finally:
                    signal.alarm(0)
                out, err = capsys.readouterr()
                lines = err.strip().splitlines()
                match = ERROR_LINE.match(lines[0]) if len(lines) == 1 else None
                label = f"{prog} {' '.join(argv)}  [{kind}]"
                if status != 2 or match is None or not match["where"].startswith(" ".join(path)):
                    problems.append(f"{label}: exit {status}, stderr {err!r}")
                elif "Traceback" in err + out:
                    problems.append(f"{label}: traceback")
                covered.setdefault(" ".join(path), set()).add(kind.split(" for ")[0])
    signal.signal(signal.SIGALRM, previous)
    assert not problems, "\n".join(problems)
    assert {n for n in list_namespaces() if n.startswith(ours)} == namespaces, "bad input built a namespace"
    # the walk reached every command of both programs, each with more than one kind of bad input
    expected = {"splitbed sweep", "splitbed advise", "netem shell", "netem profiles", "splitbed scenario run"}
    assert expected <= set(covered), sorted(covered)
    assert all(len(kinds) >= 2 for kinds in covered.values() if "unknown command" not in kinds), covered
