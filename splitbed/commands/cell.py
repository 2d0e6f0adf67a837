"""`splitbed cell-report RESULTS`: cell capacity of a `splitbed sweep --ues ...` (splitbed.report.cell)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netem.cliapp import CliError


def cell_report(
    results: str = typer.Argument(..., help="a sweep directory (with results.jsonl) or a JSONL file of records "
                                  "from `splitbed sweep --ues ...`"),
    out_dir: str | None = typer.Option(None, "--out", help="where cell.md, cell.json and cell_cdf.png go "
                                       "(default: RESULTS_DIR/report)"),
    percentile: float = typer.Option(95.0, min=0.1, max=100.0, help="the percentile of deliveries that must meet "
                                     "the budget"),
    budget: str | None = typer.Option(None, help="budget name from splitbed/data/budgets.toml or --budgets "
                                      "(its uplink_latency_ms bounds delivery_ms; default: the file's default)"),
    budgets: Annotated[Path | None, typer.Option(help="your own budgets file (docs/REPORT.md)")] = None,
) -> None:
    """Per-UE latency CDFs by cell size, the largest N meeting the budget, Jain's fairness index."""
    from splitbed.report import cell
    from splitbed.report.budgets import BudgetError, get_budget
    from splitbed.sweep.store import ResultsError, read_records, results_path

    try:
        chosen = get_budget(budget, str(budgets) if budgets else None)
        records = read_records(results).records
    except (ResultsError, BudgetError) as exc:
        raise CliError(str(exc), "give a sweep directory (with results.jsonl) and a budget name from "
                       "splitbed/data/budgets.toml") from None
    if chosen.uplink_latency_ms is None:
        raise CliError(f"budget {chosen.name!r} has no uplink_latency_ms", "choose a budget that bounds delivery")
    if not any(cell.measured(r) for r in records):
        raise CliError(f"no measured cell records in {results}", "run `splitbed sweep --ues 1,2,4 ...` first")
    out = Path(out_dir) if out_dir else results_path(results).parent / "report"
    paths = cell.write(records, out, chosen.uplink_latency_ms, percentile)
    analysis = cell.analyse(records, chosen.uplink_latency_ms, percentile)
    for config in analysis["configs"]:
        typer.echo(f"{config['config']}: largest N with p{percentile:g} delivery <= "
                   f"{chosen.uplink_latency_ms:g} ms: {config['capacity_ues'] or 'none'}")
    typer.echo(f"Cell report: {paths['markdown']} ({paths['figure'].name}, {paths['json'].name})")


def register(app: typer.Typer) -> None:
    app.command("cell-report")(cell_report)
