"""What both command lines (`netem`, `splitbed`) share: one help style and one way of reporting bad input.

Help: plain text (no boxes), wrapped to the terminal and never wider than 80 columns, examples in `\\b`
blocks kept as written. Errors: a usage error (unknown option or command, a value of the wrong type, a missing
argument, an unknown profile or model name, an invalid file) is ONE line on stderr, `PROG CMD: error: WHAT;
fix: HOW`, and exit status 2, before anything is built or written; a failure while working is one line too,
with exit status 1. A bug (any other exception) keeps its traceback: hiding it would hide the bug.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer vendors click from 0.2x on; before, it used the click package
    from typer._click import Command
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer
    from click import Command  # type: ignore[no-redef]
    from click import exceptions as click_errors  # type: ignore[no-redef]

#: Help never wider than this (an 80-column terminal; narrower terminals get narrower help).
HELP_WIDTH = 80
USAGE_STATUS = 2
FAILURE_STATUS = 1
INTERRUPTED_STATUS = 130


class CliError(Exception):
    """An error a command reports as one line: `message` (what is wrong), `fix` (what to do), exit `status`."""

    def __init__(self, message: str, fix: str = "", status: int = USAGE_STATUS) -> None:
        super().__init__(message)
        self.fix = fix
        self.status = status


ErrorFixes = Mapping[type[BaseException], "str | Callable[[BaseException], str]"]


@dataclass(frozen=True)
class ErrorPolicy:
    """How an app reports library errors: `usage_errors` maps an exception class (of the libraries the commands
    call with user input, e.g. an unknown profile) to its fix (a string, or a function of the exception): those
    exit 2; `failures` are errors while working (a link that fails to build): one line, exit 1; `around` wraps
    every run (e.g. to say a warning once)."""

    usage_errors: ErrorFixes = field(default_factory=dict)
    failures: tuple[type[BaseException], ...] = ()
    around: Callable[[], AbstractContextManager[Any]] = nullcontext


class _OneLineErrors:
    """Mixed into the app's click command: a standalone run (the program, typer's CliRunner) reports errors
    through `run_command`; a non-standalone one raises as usual."""

    policy = ErrorPolicy()

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,  # type: ignore[misc]
                                standalone_mode=False, **extra)
        command: Any = self
        sys.exit(run_command(command, prog_name or command.name or "prog", args, self.policy))


def make_app(help_text: str | None, *, name: str | None = None, policy: ErrorPolicy | None = None,
             **options: Any) -> typer.Typer:
    """A typer app in the shared style: plain help in 80 columns, `-h`, no completion, no rich tracebacks, and
    errors as one line (`policy`)."""
    settings = {"help_option_names": ["-h", "--help"], "max_content_width": HELP_WIDTH,
                **options.pop("context_settings", {})}
    no_args_is_help = options.pop("no_args_is_help", True)
    cls = type("TyperGroupWithOneLineErrors", (_OneLineErrors, TyperGroup), {"policy": policy or ErrorPolicy()})
    return typer.Typer(name=name, cls=cls, no_args_is_help=no_args_is_help, add_completion=False, help=help_text,
                       rich_markup_mode=None, pretty_exceptions_enable=False, context_settings=settings, **options)


def command_path(command: Command, prog: str, argv: Sequence[str]) -> str:
    """`PROG SUB SUBSUB` as far as `argv` names sub-commands (what the error line starts with)."""
    path = [prog]
    current = command
    for token in argv:
        if token == "--":
            break
        commands = getattr(current, "commands", None)  # a group
        if commands is None:
            break
        if token.startswith("-"):
            continue
        sub = commands.get(token)
        if sub is None:
            break
        path.append(token)
        current = sub
    return " ".join(path)


def check_writable(path: Path, option: str) -> None:
    """An output file's folder must exist and be writable before the link is built (nothing is lost later)."""
    folder = path.expanduser().resolve().parent
    if not folder.is_dir():
        raise CliError(f"{option} {path}: the folder {folder} does not exist", f"mkdir -p {folder}")
    if not os.access(folder, os.W_OK):
        raise CliError(f"{option} {path}: the folder {folder} is not writable", "choose a writable folder")


def one_line(text: str) -> str:
    """Collapse a message to one line (no trailing period, so that '; fix: ...' reads on)."""
    return " ".join(str(text).split()).rstrip(".")


def error_line(where: str, message: str, fix: str) -> str:
    """The shape of every error line: `WHERE: error: MESSAGE; fix: FIX`."""
    return f"{where}: error: {one_line(message)}; fix: {one_line(fix)}"


def _usage_message(exc: click_errors.UsageError) -> str:
    text = exc.format_message().replace(". Did you mean ", " (did you mean ")
    if "(did you mean " in text and not text.endswith(")"):
        text = text.rstrip(".") + ")"
    if isinstance(exc, click_errors.NoSuchOption) and exc.possibilities:
        text = f"{exc.message} (did you mean {' or '.join(sorted(exc.possibilities))}?)"
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def run(app: typer.Typer, prog: str, argv: Sequence[str] | None = None, policy: ErrorPolicy | None = None) -> int:
    """Run `app` on `argv` (default: sys.argv[1:]) and return the exit status; never exits the interpreter.
    `policy`: the app's own (make_app) unless given (an app of one command is no group: it needs it here)."""
    command = typer.main.get_command(app)
    chosen: ErrorPolicy = policy or getattr(command, "policy", None) or ErrorPolicy()
    return run_command(command, prog, argv, chosen)


def run_command(command: Command, prog: str, argv: Sequence[str] | None, policy: ErrorPolicy) -> int:
    """The exit status of `command` on `argv`, every error reported as described in the module docstring."""
    args = list(sys.argv[1:] if argv is None else argv)
    where = command_path(command, prog, args)
    help_fix = f"see '{where} --help'"
    try:
        with policy.around():
            result = command.main(args=args, prog_name=prog, standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        print(exc.format_message())
        return USAGE_STATUS
    except click_errors.UsageError as exc:
        if exc.ctx is not None:
            where = exc.ctx.command_path
            help_fix = f"see '{where} --help'"
        _print(error_line(where, _usage_message(exc), help_fix))
        return USAGE_STATUS
    except click_errors.ClickException as exc:  # e.g. a file click could not open
        _print(error_line(where, exc.format_message(), help_fix))
        return USAGE_STATUS
    except CliError as exc:
        _print(error_line(where, str(exc), exc.fix or help_fix))
        return exc.status
    except (KeyboardInterrupt, typer.Abort):
        _print(f"{where}: interrupted")
        return INTERRUPTED_STATUS
    except BrokenPipeError:  # `... | head`: the reader left; nothing to report
        return FAILURE_STATUS
    except Exception as exc:
        for kind, fix in policy.usage_errors.items():
            if isinstance(exc, kind):
                text = fix(exc) if callable(fix) else fix
                _print(error_line(where, str(exc), text or help_fix))
                return USAGE_STATUS
        if isinstance(exc, policy.failures):
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            _print(f"{where}: failed: {lines[0].rstrip('.')}")
            for line in lines[1:]:  # e.g. node log tails: kept, indented under the one line
                _print(f"  {line}")
            return FAILURE_STATUS
        raise
    return result if isinstance(result, int) else 0


def _print(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Tables that fit the terminal


@dataclass(frozen=True)
class Column:
    """A table column: `drop` orders the columns hidden to fit a narrow terminal (1 first; 0: never hidden);
    `wrap`: long cells may wrap at spaces (names and numbers never do, and are never cut)."""

    header: str
    justify: str = "left"
    drop: int = 0
    wrap: bool = False


def terminal_width() -> int:
    """The terminal's width; 80 when the output is not a terminal (a file, a pipe) and COLUMNS is unset."""
    from rich.console import Console

    return Console().width


def fit_table(title: str | None, columns: Sequence[Column], rows: Sequence[Sequence[str]], *,
              width: int | None = None, wide: bool = False, caption: str | None = None,
              styles: Sequence[str | None] | None = None, **table_options: Any) -> tuple[Any, int, list[str]]:
    """A rich Table of `rows` that fits `width` columns (default: the terminal's) without cutting a cell: it
    drops the columns marked droppable, in their order, until the narrowest rendering fits. Returns the table,
    the console width to print it at, and the headers dropped (say so: `--wide` shows all). With `wide`, every
    column stays and the width is what the table needs."""
    from rich.cells import cell_len
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    target = width or terminal_width()

    def needs(i: int, full: bool) -> int:
        """Cells of column i: the widest cell (no_wrap, or `full`), else the longest word (it may wrap)."""
        texts = [columns[i].header, *(row[i] for row in rows)]
        if full or not columns[i].wrap:
            return max(cell_len(line) for text in texts for line in text.splitlines() or [""])
        return max(cell_len(word) for text in texts for word in text.split() or [""])

    def build(keep: list[int], blank: bool = False) -> Table:
        table = Table(title=None if blank else title, caption=None if blank else caption, **table_options)
        for i in keep:
            column = columns[i]
            table.add_column("" if blank else column.header, justify=column.justify,  # type: ignore[arg-type]
                             no_wrap=not column.wrap, min_width=needs(i, False))
        if not blank:
            for r, row in enumerate(rows):
                table.add_row(*(row[i] for i in keep), style=styles[r] if styles else None)
        return table

    def required(keep: list[int], full: bool) -> int:
        console = Console(width=10_000)  # borders and padding: what an empty table of these columns takes
        empty = build(keep, blank=True)
        extra = Measurement.get(console, console.options, empty).minimum - sum(needs(i, False) for i in keep)
        return extra + sum(needs(i, full) for i in keep)

    keep = list(range(len(columns)))
    if wide:
        return build(keep), max(target, required(keep, full=True)), []
    order = sorted((c.drop, i) for i, c in enumerate(columns) if c.drop > 0)
    dropped: list[str] = []
    while required(keep, full=False) > target and order:
        _, index = order.pop(0)
        keep.remove(index)
        dropped.append(columns[index].header)
    return build(keep), target, dropped


def dropped_note(dropped: Sequence[str], width: int) -> str | None:
    """The line under a table that lost columns to the terminal's width."""
    if not dropped:
        return None
    return f"(hidden to fit {width} columns: {', '.join(dropped)}; --wide shows every column)"
