"""Split inference over emulated 5G links: a UE runs the head of a DNN, sends the intermediate tensors uplink
in the AI intermediate data format through an emulated link, an edge node runs the tail; every inference
becomes one metrics record (sizes, compute, delivery, end-to-end latency, wire traffic).

\b
Examples:
  splitbed sweep --dry-run     # the main job's points (make sweep runs them)
  splitbed sweep -m mobilenet_v2 -p out_relu --repetitions 3
  splitbed advise -m mobilenet_v2 --profile lte --repeats 3
  splitbed partitions vgg16
  splitbed scenario list
  splitbed doctor
"""

# Heavy imports (TensorFlow) stay inside the commands, so that `--help` is instant.

from __future__ import annotations

from netem.cliapp import make_app, run
from splitbed.cli_support import POLICY
from splitbed.commands import (
    advise,
    cell,
    devices,
    docker_image,
    doctor,
    nodes,
    partitions,
    report,
    scenario,
    sweep,
)
from splitbed.commands import format as format_command

app = make_app(__doc__, name="splitbed", policy=POLICY)


@app.callback()
def _group() -> None:
    """Keeps `splitbed` a group of sub-commands even while only one is registered (typer would otherwise make
    that single command the whole program and reject its name as an extra argument)."""

# Each module in splitbed/commands registers its own sub-commands, in this order (the order of `--help`).
COMMAND_MODULES = (doctor, partitions, devices, nodes, sweep, report, cell, advise, scenario, format_command, docker_image)
for _module in COMMAND_MODULES:
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """`splitbed` (argv None: the process's own arguments): returns the exit status (2: bad input, as one line
    with the fix; 1: a failure while working)."""
    return run(app, "splitbed", argv)


if __name__ == "__main__":
    raise SystemExit(main())
