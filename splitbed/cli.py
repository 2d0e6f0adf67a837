"""The `splitbed` command line. Heavy imports (TensorFlow) stay inside the commands, so `--help` is instant."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.callback()
def _group() -> None:
    """Keeps `splitbed` a group of sub-commands even while only one is registered (typer would otherwise make
    that single command the whole program and reject its name as an extra argument)."""

# Each module in splitbed/commands registers its own sub-commands.
COMMAND_MODULES = ["doctor", "partitions", "devices", "nodes", "sweep", "report", "advise", "scenario", "format", "docker_image"]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        modname = f"splitbed.commands.{name}"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:  # command not built yet
            if exc.name == modname:
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
