"""`splitbed report`: Markdown + self-contained HTML from a sweep's results (docs/REPORT.md).

    paths = build_report("results/sweep")   # -> results/sweep/report/report.{md,html} + plots/*.png and *.svg
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitbed.report.baselines import baseline_tables
from splitbed.report.budgets import Budget, get_budget, load_budgets
from splitbed.report.kpi_tables import tail_tables, traffic_line, traffic_tables
from splitbed.report.plots import all_plots
from splitbed.report.provenance import provenance
from splitbed.report.render import ReportContent, render_html, render_markdown
from splitbed.report.tables import best_table, seed_tables
from splitbed.report.traffic_plots import traffic_plots
from splitbed.sweep.store import ResultsError, read_records, results_path
from splitbed.sweep.summary import summarise
from splitbed.sweep.traffic_model import traffic_models

REPORT_DIR_NAME = "report"

__all__ = ["Budget", "ReportPaths", "ResultsError", "build_report", "get_budget", "load_budgets"]


@dataclass(frozen=True)
class ReportPaths:
    directory: Path
    markdown: Path
    html: Path
    plots: tuple[Path, ...]


def build_report(results: str | Path, out_dir: str | Path | None = None, *, budget: str | None = None,
                 title: str = "splitbed: split inference measurements") -> ReportPaths:
    """Write report.md, report.html and plots/ for a results directory or JSONL file.

    `out_dir` defaults to `<results dir>/report`. Raises ResultsError when there is nothing to report."""
    source = results_path(results)
    read = read_records(source)
    summaries = summarise(read.records)
    if not summaries:
        raise ResultsError(f"{source} holds no inference measurements (only warm-ups, actions or unreadable lines)")
    report_dir = Path(out_dir) if out_dir is not None else source.parent / REPORT_DIR_NAME
    report_dir.mkdir(parents=True, exist_ok=True)
    chosen = get_budget(budget)
    profiles = profile_dicts(read.records)
    plots, plot_notes = all_plots(summaries, chosen, report_dir, profiles)
    plots += traffic_plots(read.records, summaries, chosen, source.parent, report_dir)
    excluded = sorted(name for name, p in profiles.items() if (p.get("uplink") or {}).get("rate_mbit") is None)
    models = traffic_models(read.records, summaries)
    content = ReportContent(title=title, source=str(source), budget=chosen, provenance=provenance(read.records),
                            best=best_table(summaries, chosen), tables=seed_tables(summaries), plots=plots,
                            excluded_rate_profiles=excluded, skipped_lines=read.skipped,
                            tail_tables=tail_tables(summaries, chosen), traffic_tables=traffic_tables(models),
                            traffic_line=traffic_line(read.records), plot_notes=plot_notes,
                            baseline_tables=baseline_tables(read.records, summaries))
    markdown = report_dir / "report.md"
    page = report_dir / "report.html"
    _write(markdown, render_markdown(content))
    _write(page, render_html(content, report_dir))
    return ReportPaths(report_dir, markdown, page, tuple(report_dir / p.path for p in plots))


def profile_dicts(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each profile's description as the first measured record of it carries it (link.profile)."""
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        link = record.get("link")
        profile = link.get("profile") if isinstance(link, dict) else None
        if isinstance(profile, dict) and isinstance(profile.get("name"), str):
            found.setdefault(profile["name"], profile)
    return found


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
