"""`splitbed scenario`: run a dynamic-network scenario (live link changes, outages, trace replay, adaptive
partitioning) on the testbed and write records, a timeline plot and a summary (docs/SCENARIOS.md)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from netem.cliapp import CliError

SCENARIO_FIX = "list the built-in scenarios with 'splitbed scenario list'; the file format is in docs/SCENARIOS.md"


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="Dynamic-network scenarios (live link changes, outages, trace "
                        "replay, adaptive partitioning) on the testbed: records, a timeline plot and a summary "
                        "(docs/SCENARIOS.md).")
    app.add_typer(group, name="scenario")

    @group.command("list")
    def list_() -> None:
        """The built-in scenarios (splitbed/data/scenarios/)."""
        from splitbed.scenario import builtin_names, load

        for name in builtin_names():
            typer.echo(f"{name}: {load(name).description}")

    @group.command()
    def check(scenario: Annotated[str, typer.Argument(help="scenario TOML path or built-in name")]) -> None:
        """Validate a scenario file and print its timeline (nothing runs)."""
        from splitbed.scenario import ScenarioError, load
        from splitbed.scenario.timeline import uplink_capacity

        try:
            spec = load(scenario)
        except ScenarioError as exc:
            raise CliError(str(exc), SCENARIO_FIX) from None
        work = spec.workload
        typer.echo(f"{spec.name}: base profile {spec.base.name}; model {work.model}, partition {work.partition}; "
                   f"{work.inferences or '-'} inferences / {work.duration_s or '-'} s, gap {work.gap_ms:g} ms, "
                   f"deadline {work.deadline_s:g} s")
        for event in spec.events:
            cap = uplink_capacity(event)
            typer.echo(f"  {event.at_s:8.3f} s  {event.kind:12s} {event.label}  "
                       f"(uplink {'unshaped' if cap is None else cap} Mbit/s)")

    @group.command("run")
    def run_(
        scenario: Annotated[str, typer.Argument(help="scenario TOML path or built-in name")],
        out: str = typer.Option(..., "--out", help="results directory"),
        backend: str | None = typer.Option(None, help="link backend (default: the scenario's, else auto)"),
        weights: str | None = typer.Option(None, help="weights for both nodes (default: the scenario's)"),
    ) -> None:
        """Run a scenario on the testbed; writes OUT/records.jsonl, timeline.png, summary.md."""
        from rich.console import Console

        from splitbed.models.weights import check_spec
        from splitbed.scenario import ScenarioError, load, run
        from splitbed.sweep.plan import BACKENDS
        from splitbed.testbed import TestbedError

        if backend is not None and backend not in BACKENDS:
            raise CliError(f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
        if weights is not None:
            check_spec(weights)
        console = Console(width=None if sys.stdout.isatty() else 160)
        try:
            spec = load(scenario)
        except ScenarioError as exc:
            raise CliError(str(exc), SCENARIO_FIX) from None

        def show(row: dict[str, Any]) -> None:
            info = row["scenario"]
            if row.get("status") == "ok":
                console.print(f"{info['t_start_s']:7.2f} s  #{info['index']:<4d} {row['partition_name']:28s} "
                              f"e2e {row['e2e_latency_ms']:9.1f} ms  delivery {row['delivery_ms']:9.1f} ms")
            else:
                error = row.get("error") or {}
                console.print(f"{info['t_start_s']:7.2f} s  #{info['index']:<4d} [red]{error.get('code')}[/red]: "
                              f"{error.get('message')}")

        try:
            console.print(f"{spec.name}: starting the testbed (nodes, warm-up, policy probes) ...")
            result = run(spec, out, backend=backend, weights=weights, on_row=show)
        except (ScenarioError, TestbedError) as exc:
            raise CliError(f"scenario failed: {exc}", f"the records so far are in {out}; see the node logs "
                           "above", status=1) from None
        for problem in result.problems:
            console.print(f"[yellow]problem:[/yellow] {problem}")
        console.print(f"written: {result.files['summary']}, {result.files['timeline']}, {result.files['records']}")
