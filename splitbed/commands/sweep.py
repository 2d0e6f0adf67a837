"""`splitbed sweep`: the main job. Measures profile x model x partition x carriage points on the testbed,
appends every metrics record to OUT/results.jsonl, writes OUT/summary.csv (median and 95% CI, percentiles and
budget shares per point), OUT/traffic_model.csv and .md (from the captures) and the report (OUT/report/report.html
and .md), then prints the summary table and the report's path. docs/SWEEP.md."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_OUT = "results/sweep"


def sweep(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="model (repeatable; default vgg16)")] = None,
    partition: Annotated[list[str] | None, typer.Option(
        "--partition", "-p", help="partition name or id, `seed` (the seed's example candidates, or every candidate "
        "of a model that has none marked) or `all` (every candidate in the model's data file); repeatable; "
        "default seed")] = None,
    profile: Annotated[list[str] | None, typer.Option(
        help="link profile name or TOML path (repeatable; default 5g-split-ai, the TS 22.261 split-AI link)")] = None,
    encoding: Annotated[list[str] | None, typer.Option(help="tlv or json-baseline (repeatable; default tlv)")] = None,
    compression: Annotated[list[str] | None, typer.Option(
        help="compression profile for tlv, by name or id (repeatable; default none)")] = None,
    repetitions: int = typer.Option(10, help="good inferences per point (n of the median and its CI)"),
    warmup: int = typer.Option(1, help="warm-up inferences per point, recorded as such and left out of statistics"),
    weights: str = typer.Option("auto", help="auto, imagenet, random:SEED or a weights file (both nodes)"),
    backend: str = typer.Option("auto", help="link backend: auto, kernel, userspace"),
    runtime: str = typer.Option("process", help="node runtime: process or docker"),
    image: str = typer.Option("builtin:chelsea", help="input image file, or builtin:NAME"),
    out_dir: str = typer.Option(DEFAULT_OUT, "--out", help="results directory (an existing one is resumed)"),
    local_baseline: bool = typer.Option(True, help="add each model's full local inference as a point (the "
                                        "`predictions` partition: the whole model on the UE; docs/SWEEP.md)"),
    capture: bool = typer.Option(True, help="capture every point on the UE and edge sides and add per-inference "
                                 "traffic figures to the records (OUT/captures/, docs/SWEEP.md)"),
    max_pcap_mb: float = typer.Option(64.0, help="size cap of each pcap kept, MB: a larger capture keeps only the "
                                      "frames' first 128 bytes (headers), and one still larger is removed"),
    full: bool = typer.Option(False, help="the seed's whole matrix: vgg16+resnet50 x all candidates x all built-in "
                              "profiles x both encodings (options given explicitly still apply)"),
    report: bool = typer.Option(True, help="write the report at the end"),
    dry_run: bool = typer.Option(False, help="list the points and what is already done; measure nothing"),
    estimate: bool = typer.Option(False, help="predict the sweep's wall time (times each model's partitions here "
                                  "first, minutes; no testbed) and exit"),
    log_level: str = typer.Option("warning", help="debug, info, warning"),
) -> None:
    """Measure a sweep (resumable), then print the summary table and the report's path."""
    from rich.console import Console
    from rich.logging import RichHandler

    from splitbed.sweep import SweepError, SweepSpec, SweepSpecError, points, run_sweep
    from splitbed.sweep.store import completed_counts

    out = Path(out_dir)
    console = Console(width=None if sys.stdout.isatty() else 200)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING), format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])
    # tf.function retracing notices: every partition is its own sub-model, so retracing is expected, not a problem
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    given: dict[str, Any] = {"models": model, "partitions": partition, "profiles": profile, "encodings": encoding,
                             "compressions": compression}
    options: dict[str, Any] = {k: tuple(v) for k, v in given.items() if v}
    options.update(repetitions=repetitions, warmup=warmup, weights=weights, backend=backend, runtime=runtime,
                   image=image, capture=capture, max_pcap_mb=max_pcap_mb,
                   baselines=("local",) if local_baseline else ())
    try:
        spec = SweepSpec.full(**options) if full else SweepSpec(**options)
        matrix = points(spec)
    except SweepSpecError as exc:
        raise typer.BadParameter(str(exc)) from None
    if estimate:
        from splitbed.advise import AdviseError
        from splitbed.sweep.estimate import describe
        from splitbed.sweep.estimate import estimate as predict_wall_time

        try:
            with console.status("timing partitions on this machine ...") as status:
                result = predict_wall_time(spec, on_model=lambda m: status.update(f"timing {m} ..."))
        except AdviseError as exc:
            raise typer.BadParameter(str(exc)) from None
        for line in describe(result):
            console.print(line)
        return
    if dry_run:  # reads only: creates and repairs nothing
        counts = completed_counts(out)
        done = sum(1 for p in matrix if counts[p.key] >= spec.repetitions)
        for p in matrix:
            console.print(f"{counts[p.key]:>4}/{spec.repetitions}  {p.key}")
        console.print(f"{len(matrix)} points, {done} complete, {len(matrix) - done} to measure "
                      f"({spec.repetitions} repetitions + {spec.warmup} warm-up each)")
        return
    with _RichProgress(console) as bar:
        try:
            outcome = run_sweep(spec, out, progress=bar)
        except SweepError as exc:
            console.print(f"[red]sweep stopped:[/red] {exc}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print(f"interrupted: every finished inference is in {out / 'results.jsonl'}; run the same "
                          "command to resume")
            raise typer.Exit(130) from None
    console.print(f"{len(matrix)} points ({outcome.skipped_points} already complete), {outcome.inferences} "
                  f"inferences this run, {outcome.errors} errors, {outcome.wall_s:.0f} s")
    if outcome.incomplete:
        console.print(f"[yellow]{len(outcome.incomplete)} point(s) lack good repetitions; run again to retry[/yellow]")
    finish(out, {p.key for p in matrix}, console, write_report=report)  # ends with the table and the report path
    if outcome.incomplete:
        raise typer.Exit(1)


def finish(out: Path, keys: set[str], console: Any, *, write_report: bool) -> None:
    """Write summary.csv (every point in the results), print this sweep's points, write and name the report."""
    from splitbed.sweep import read_records, summarise, write_csv
    from splitbed.sweep.summary import SUMMARY_NAME

    records = read_records(out).records
    summaries = summarise(records)
    if not summaries:
        console.print(f"no measurements in {out / 'results.jsonl'} yet: no summary, no report")
        return
    csv_path = write_csv(summaries, out / SUMMARY_NAME)
    from splitbed.sweep import traffic_model

    models = traffic_model.traffic_models(records, summaries)
    traffic_paths = None
    if any(m.measured for m in models):
        traffic_paths = (traffic_model.write_csv(models, out / traffic_model.CSV_NAME),
                         traffic_model.write_markdown(models, out / traffic_model.MARKDOWN_NAME))
    shown = [s for s in summaries if s.key in keys] or summaries
    console.print(summary_table(shown))
    disturbed = stolen_points(shown)
    if disturbed:
        console.print(f"[yellow]{disturbed}[/yellow]", soft_wrap=True)
    console.print(f"Summary (median and 95% CI, p90/p95/p99/max, budget shares per point): {csv_path}",
                  soft_wrap=True)
    if traffic_paths is not None:
        console.print(f"Uplink traffic model per point: {traffic_paths[1]} (CSV: {traffic_paths[0]})", soft_wrap=True)
    if write_report:
        from splitbed.report import build_report

        paths = build_report(out)
        console.print(f"Report: {paths.html} (Markdown: {paths.markdown})", soft_wrap=True)


def stolen_points(summaries: list[Any]) -> str | None:
    """A warning naming the points measured while the hypervisor took over netem.hostload.STEAL_LIMIT of the
    host's CPU: their times describe a descheduled VM as much as the link and the model."""
    from netem.hostload import STEAL_LIMIT

    hit = [s for s in summaries if s.host_cpu_stolen_pct is not None and s.host_cpu_stolen_pct > 100 * STEAL_LIMIT]
    if not hit:
        return None
    named = ", ".join(f"{s.profile}/{s.model}/{s.partition}/{s.carriage} ({s.host_cpu_stolen_pct:.1f} %)"
                      for s in hit[:5]) + (f" and {len(hit) - 5} more" if len(hit) > 5 else "")
    return (f"{len(hit)} point(s) measured while the hypervisor stole over {STEAL_LIMIT:.0%} of this host's CPU "
            f"(summary.csv: host_cpu_stolen_pct): {named}. Their times may be inflated; run them again on a "
            "quieter host or compare with care.")


def summary_table(summaries: list[Any]) -> Any:
    """The rich table printed at the end of a sweep: one row per point, the best partition per group starred."""
    from rich.table import Table

    from splitbed.sweep import best_per_group

    best = {id(s) for s in best_per_group(summaries).values()}
    table = Table(title="splitbed sweep: medians [95% CI] per point", show_lines=False)
    for header in ("profile", "model", "partition", "carriage"):
        table.add_column(header)
    from splitbed.report.budgets import get_budget

    budget = get_budget()
    for header in ("n", "uplink bytes", "local inf. ms", "delivery ms", "remote inf. ms", "e2e ms [95% CI]",
                   f"UL <= {budget.uplink_latency_ms:g} ms"):
        table.add_column(header, justify="right")
    for s in summaries:
        e2e = s.figures["e2e_latency_ms"]
        ci = f" [{e2e.low:.1f}, {e2e.high:.1f}]" if e2e.has_ci else " [n<6: no CI]"
        star = "* " if id(s) in best else ""
        table.add_row(s.profile, s.model, f"{star}{s.partition}", s.carriage, f"{s.n}" + (f" ({s.n_errors} err)"
                      if s.n_errors else ""), _num(s.median("uplink_bytes"), "{:,.0f}"),
                      _num(s.median("local_inference_ms")), _num(s.median("delivery_ms")),
                      _num(s.median("remote_inference_ms")), (_num(e2e.median) + ci) if e2e.median is not None else "-",
                      _share(s, budget.name), style="bold" if star else None)
    table.caption = ("* = lowest median end-to-end latency for its profile, model and carriage; last column: "
                     f"uplink deliveries within the budget's UL latency ({budget.title})")
    return table


def _share(summary: Any, budget: str) -> str:
    for share in summary.budget_shares:
        if share.budget == budget and share.kind == "latency" and share.n:
            return f"{share.met}/{share.n}"
    return "-"


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


class _RichProgress:
    """A rich progress bar with ETA over the sweep's inferences (warm-ups included)."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=console, transient=False)
        self.task: Any = None

    def __enter__(self) -> _RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def begin(self, total: int, done_points: int, points: int) -> None:
        if done_points:
            self.progress.console.print(f"resuming: {done_points} of {points} points already complete")
        self.task = self.progress.add_task("sweep", total=total)

    def phase(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=text)

    def advance(self, record: dict[str, Any]) -> None:
        if self.task is not None:
            self.progress.advance(self.task)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
