"""`splitbed doctor`: what this machine can do, what that means for the numbers, and the fix for what is missing."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(
        json_output: bool = typer.Option(False, "--json", help="print the probes as JSON"),
        no_userns: bool = typer.Option(
            False, "--no-userns", help="when not root, probe as this user instead of inside a user namespace"
        ),
    ) -> None:
        """Probe this machine (namespaces, qdiscs, offloads, capture, TensorFlow, weights, energy); exit 1 when a
        must-have is missing."""
        from splitbed.doctor import main

        argv = [*(["--json"] if json_output else []), *(["--no-userns"] if no_userns else [])]
        raise typer.Exit(main(argv))
