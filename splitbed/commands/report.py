"""`splitbed report RESULTS`: Markdown + self-contained HTML report of a sweep's results (docs/REPORT.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netem.cliapp import CliError


def report(
    results: str = typer.Argument(..., help="a sweep directory (with results.jsonl) or a JSONL file of records"),
    out_dir: str | None = typer.Option(None, "--out", help="report directory (default: RESULTS_DIR/report)"),
    budget: str | None = typer.Option(None, help="budget name from splitbed/data/budgets.toml or --budgets "
                                      "(default: the file's default; the package's is the split AI/ML image "
                                      "recognition KPI of TS 22.261)"),
    budgets: Annotated[Path | None, typer.Option(
        help="your own budgets file, in the format of splitbed/data/budgets.toml (docs/REPORT.md)")] = None,
    title: str = typer.Option("splitbed: split inference measurements", help="report title"),
) -> None:
    """Write report.md and report.html (plots embedded) and print their paths."""
    from splitbed.report import ResultsError, build_report
    from splitbed.report.budgets import BudgetError

    try:
        paths = build_report(results, Path(out_dir) if out_dir else None, budget=budget, title=title,
                             budgets_file=budgets)
    except (ResultsError, BudgetError) as exc:
        raise CliError(str(exc), "give a sweep directory (with results.jsonl) or a JSONL file of records; budget "
                       "names are in splitbed/data/budgets.toml (docs/REPORT.md)") from None
    typer.echo(f"Report: {paths.html}")
    typer.echo(f"        {paths.markdown} ({len(paths.plots)} plots in {paths.directory / 'plots'})")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
