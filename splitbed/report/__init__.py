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
from splitbed.report.repeatability import repeatability_tables
from splitbed.report.tables import Table, best_table, metric_tables
from splitbed.report.traffic_plots import traffic_plots
from splitbed.sweep.store import ResultsError, read_records, results_path
from splitbed.sweep.summary import PointSummary, by_cpu_model, summarise
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
                 title: str = "splitbed: split inference measurements",
                 budgets_file: str | Path | None = None, pool_hosts: bool = False) -> ReportPaths:
    """Write report.md, report.html and plots/ for a results directory or JSONL file.

    `out_dir` defaults to `<results dir>/report`. Points measured on hosts of different CPU models get their tables
    and plots per host (CPU model), unless `pool_hosts` (splitbed.sweep.summary). Raises ResultsError when there
    is nothing to report."""
    chosen = get_budget(budget, None if budgets_file is None else str(budgets_file))  # a typo in the name is refused before anything is read or written
    source = results_path(results)
    read = read_records(source)
    summaries = summarise(read.records, pool_hosts=pool_hosts,
                          budgets=list(load_budgets(None if budgets_file is None else str(budgets_file)).values()))
    if not summaries:
        raise ResultsError(f"{source} holds no inference measurements (only warm-ups, actions or unreadable lines)")
    report_dir = Path(out_dir) if out_dir is not None else source.parent / REPORT_DIR_NAME
    report_dir.mkdir(parents=True, exist_ok=True)
    profiles = profile_dicts(read.records)
    hosts = by_cpu_model(summaries)
    if len(hosts) == 1:
        plots, plot_notes = all_plots(summaries, chosen, report_dir, profiles)
        best, tables = best_table(summaries, chosen), metric_tables(summaries)
    else:
        best, tables, plots, plot_notes = _per_host(hosts, chosen, report_dir, profiles)
    plots += traffic_plots(read.records, summaries, chosen, source.parent, report_dir)
    excluded = sorted(name for name, p in profiles.items() if (p.get("uplink") or {}).get("rate_mbit") is None)
    notes = []
    if pool_hosts and any(";" in s.cpu_model for s in summaries):
        notes.append("Some points pool records of hosts with different CPU models (--pool-hosts): their compute "
                     "times mix machines (summary.csv: cpu_model, hosts).")
    elif len(hosts) > 1:
        notes.append(f"Measured on {len(hosts)} CPU models: tables and plots are per host (CPU model), never pooled "
                     "(docs/DISTRIBUTED.md).")
    models = traffic_models(read.records, summaries)
    content = ReportContent(title=title, source=str(source), budget=chosen, provenance=provenance(read.records),
                            best=best, tables=tables, plots=plots, excluded_rate_profiles=excluded,
                            skipped_lines=read.skipped, method_notes=notes,
                            tail_tables=tail_tables(summaries, chosen), traffic_tables=traffic_tables(models),
                            traffic_line=traffic_line(read.records), plot_notes=plot_notes,
                            baseline_tables=baseline_tables(read.records, summaries),
                            repeatability_tables=_per_host_titles(hosts, repeatability_tables))
    markdown = report_dir / "report.md"
    page = report_dir / "report.html"
    _write(markdown, render_markdown(content))
    _write(page, render_html(content, report_dir))
    return ReportPaths(report_dir, markdown, page, tuple(report_dir / p.path for p in plots))


def host_label(cpu_model: str, members: list[PointSummary]) -> str:
    machines = list(dict.fromkeys(h for s in members for h in s.hosts))
    return f"{cpu_model} ({', '.join(machines)})" if machines else cpu_model


def _per_host(hosts: dict[str, list[PointSummary]], budget: Budget, report_dir: Path,
              profiles: dict[str, dict[str, Any]]) -> tuple[Table, list[Table], list[Any], list[str]]:
    """The best table with a host column, and each host's tables and plots (plots in report_dir/hostN/plots)."""
    best: Table | None = None
    tables: list[Table] = []
    plots: list[Any] = []
    notes: list[str] = []
    for index, (cpu_model, members) in enumerate(hosts.items(), start=1):
        label = host_label(cpu_model, members)
        host_best = best_table(members, budget)
        if best is None:
            best = Table(title=host_best.title, headers=["Host (CPU model)", *host_best.headers], rows=[],
                         anchor=host_best.anchor, notes=list(host_best.notes))
        best.rows += [[label, *row] for row in host_best.rows]
        for table in metric_tables(members):
            table.title += f"; host {label}"
            table.anchor += f"-host{index}"
            tables.append(table)
        host_plots, host_notes = all_plots(members, budget, report_dir / f"host{index}", profiles)
        for plot in host_plots:
            plot.path = Path(f"host{index}") / plot.path
            plot.title += f" (host {label})"
        plots += host_plots
        notes += [n for n in host_notes if n not in notes]
    assert best is not None
    return best, tables, plots, notes


def _per_host_titles(hosts: dict[str, list[PointSummary]], make: Any) -> list[Table]:
    """`make(summaries)`'s tables, per host (CPU model) when the records come from several."""
    if len(hosts) <= 1:
        return list(make([s for members in hosts.values() for s in members]))
    tables: list[Table] = []
    for index, (cpu_model, members) in enumerate(hosts.items(), start=1):
        for table in make(members):
            table.title += f"; host {host_label(cpu_model, members)}"
            table.anchor += f"-host{index}"
            tables.append(table)
    return tables


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
