"""The `splitbed` command line. Heavy imports (TensorFlow) stay inside the commands, so `--help` is instant."""

from __future__ import annotations

import typer

from splitbed.commands import advise, docker_image, doctor, nodes, partitions, report, scenario, sweep
from splitbed.commands import format as format_command

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.callback()
def _group() -> None:
    """Keeps `splitbed` a group of sub-commands even while only one is registered (typer would otherwise make
    that single command the whole program and reject its name as an extra argument)."""

# Each module in splitbed/commands registers its own sub-commands, in this order (the order of `--help`).
COMMAND_MODULES = (doctor, partitions, nodes, sweep, report, advise, scenario, format_command, docker_image)
for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
