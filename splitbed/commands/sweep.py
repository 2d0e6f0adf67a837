"""`splitbed sweep`: the main job. Measures profile x model x partition x carriage points on the testbed,
appends every metrics record to OUT/results.jsonl, writes OUT/summary.csv (median and 95% CI, percentiles and
budget shares per point), OUT/traffic_model.csv and .md (from the captures) and the report (OUT/report/report.html
and .md), then prints the summary table and the report's path. docs/SWEEP.md."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from netem.cliapp import CliError, Column, dropped_note, fit_table

DEFAULT_OUT = "results/sweep"
SPEC_FIX = ("see 'splitbed sweep --help'; models and partitions: 'splitbed partitions [MODEL]'; profiles: "
            "'netem profiles'; devices: 'splitbed devices'")


def sweep(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="model name or .onnx file (repeatable; "
                                                    "default vgg16)")] = None,
    partition: Annotated[list[str] | None, typer.Option(
        "--partition", "-p", help="partition name or id, `examples` (the model's example partitions: VGG16's six, "
        "block1_conv1 ... fc1; every candidate of a model that marks none) or `all` (every candidate in the "
        "model's data file); repeatable; default examples")] = None,
    profile: Annotated[list[str] | None, typer.Option(
        help="link profile name or TOML path (repeatable; default 5g-split-ai, the TS 22.261 split-AI link)")] = None,
    rate: Annotated[list[str] | None, typer.Option(
        help="uplink rates in Mbit/s to sweep at each profile's delay, e.g. 10,20,50,100 (comma-separated or "
        "repeated; each rate is its own point; default: the profile's own rate)")] = None,
    ues: Annotated[list[str] | None, typer.Option(
        "--ues", help="UEs sharing one emulated cell, e.g. 1,2,4,8 (comma-separated or repeated; each count is its "
        "own point; every UE runs the point's workload against one edge; userspace link, docs/NETEM.md); default: "
        "one UE, no cell")] = None,
    encoding: Annotated[list[str] | None, typer.Option(help="tlv or json-baseline (repeatable; default tlv)")] = None,
    compression: Annotated[list[str] | None, typer.Option(
        help="compression profile for tlv, by name or id (repeatable; default none)")] = None,
    repetitions: int = typer.Option(10, help="good inferences per point (n of the median and its CI)"),
    warmup: int = typer.Option(1, help="warm-up inferences per point at least, recorded as such and left out of "
                               "statistics"),
    warmup_max: int = typer.Option(5, help="warm-ups go on up to this many until two in a row agree on the compute "
                                   "time within 5 % (= --warmup for a fixed count)"),
    cpus: str = typer.Option("auto", help="CPUs of the UE node, edge node, link and packet captures: auto (the default plan for "
                             "this host), none, or ue=0;edge=1;link=1;capture=0 (docs/SWEEP.md)"),
    weights: str = typer.Option("auto", help="auto, imagenet, random:SEED or a weights file (both nodes)"),
    backend: str = typer.Option("auto", help="link backend: auto, kernel, userspace"),
    runtime: str = typer.Option("process", help="node runtime: process or docker"),
    engine: str = typer.Option("tensorflow", help="inference runtime: tensorflow, onnxruntime (registered models "
                               "converted at first use), or UE/EDGE such as onnxruntime/tensorflow; .onnx models "
                               "run on onnxruntime"),
    image: str = typer.Option("builtin:chelsea", help="input image file, or builtin:NAME"),
    ue_device: Annotated[list[str] | None, typer.Option(
        "--ue-device", help="device profile the UE emulates, by name (`splitbed devices`) or TOML path (repeatable; "
        "default phone-midrange; `host` = no emulation)")] = None,
    edge_device: Annotated[list[str] | None, typer.Option(
        "--edge-device", help="device profile the edge emulates (repeatable; default host = no emulation; e.g. "
        "edge-l4)")] = None,
    transport: Annotated[list[str] | None, typer.Option(
        "--transport", help="the session's binding: tcp (default) or quic (aioquic, one stream per session); "
        "repeatable, e.g. --transport tcp --transport quic to compare them (part of the point key)")] = None,
    workload: Annotated[list[str] | None, typer.Option(
        "--workload", help="when frames arrive: single (back to back, the default), periodic:FPS (a camera, 1-60 "
        "frames/s) or poisson:RATE, with an overload policy /queue:N (default /queue:1) or /skip, e.g. "
        "periodic:1/queue:1; comma-separated or repeated, each its own point (docs/SWEEP.md, 'Workloads')")] = None,
    out_dir: str = typer.Option(DEFAULT_OUT, "--out", help="results directory (an existing one is resumed)"),
    local_baseline: bool = typer.Option(True, help="add each model's full local inference as a point (the "
                                        "`predictions` partition: the whole model on the UE; docs/SWEEP.md)"),
    offload_baseline: bool = typer.Option(True, help="add each model's full offload of the camera image as points: "
                                          "the uint8 image at the model's input size raw and as a JPEG of quality "
                                          "90 (the `camera` partition; docs/SWEEP.md)"),
    host_speed_probe: bool = typer.Option(True, help="run a fixed reference workload on the UE's and the edge's "
                                          "CPUs between inferences (never during one) and give its spread per point "
                                          "(summary.csv host_speed_*; docs/SWEEP.md, 'Host speed')"),
    capture: bool = typer.Option(True, help="capture every point on the UE and edge sides and add per-inference "
                                 "traffic figures to the records (OUT/captures/, docs/SWEEP.md)"),
    max_pcap_mb: float = typer.Option(64.0, help="size cap of each pcap kept, MB: a larger capture keeps only the "
                                      "frames' first 128 bytes (headers), and one still larger is removed"),
    full: bool = typer.Option(False, help="the whole matrix: vgg16+resnet50 x all candidates x all built-in "
                              "profiles x both encodings (options given explicitly still apply)"),
    report: bool = typer.Option(True, help="write the report at the end"),
    budget: str | None = typer.Option(None, help="the report's budget, by name (default: the budgets file's "
                                      "default; the package's is TS 22.261's split AI/ML image recognition)"),
    budgets: Annotated[Path | None, typer.Option(
        help="your own budgets file, in the format of splitbed/data/budgets.toml (docs/REPORT.md)")] = None,
    dry_run: bool = typer.Option(False, help="list the points and what is already done; measure nothing"),
    estimate: bool = typer.Option(False, help="predict the sweep's wall time (times each model's partitions here "
                                  "first, minutes; no testbed) and exit"),
    scheduler: str | None = typer.Option(None, help="a Dask scheduler, tcp://HOST:8786: measure the points on its "
                                         "testbed workers, one per machine at a time (docs/DISTRIBUTED.md); "
                                         "default: on this machine, no Dask"),
    wait_workers: float = typer.Option(60.0, help="with --scheduler: seconds to wait for a testbed worker"),
    workers: int | None = typer.Option(None, min=1, max=10_000, help="with --estimate: testbed workers to plan "
                                       "for (default: those of --scheduler, else 1)"),
    pool_hosts: bool = typer.Option(False, help="pool a point's records across hosts of different CPU models in "
                                    "the summary and report (default: one row per CPU model)"),
    log_level: str = typer.Option("warning", help="debug, info, warning"),
    wide: bool = typer.Option(False, "--wide", help="show every column of the summary table, however wide"),
) -> None:
    """Measure a sweep (resumable), then print the summary table and the report's path."""
    from rich.console import Console
    from rich.logging import RichHandler

    from splitbed.sweep import SweepError, SweepSpec, SweepSpecError, points, run_sweep
    from splitbed.sweep.store import completed_counts

    out = Path(out_dir)
    console = Console()  # the terminal's width; 80 into a file or pipe (COLUMNS sets another)
    from splitbed.cli_support import log_level as level_of

    logging.basicConfig(level=level_of(log_level), format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])
    # tf.function retracing notices: every partition is its own sub-model, so retracing is expected, not a problem
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    given: dict[str, Any] = {"models": model, "partitions": partition, "profiles": profile, "encodings": encoding,
                             "compressions": compression, "ue_devices": ue_device, "edge_devices": edge_device,
                             "transports": transport}
    options: dict[str, Any] = {k: tuple(v) for k, v in given.items() if v}
    options.update(repetitions=repetitions, warmup=warmup, warmup_max=max(warmup, warmup_max), weights=weights,
                   backend=backend, runtime=runtime, engine=engine, image=image, cpus=cpus, capture=capture,
                   max_pcap_mb=max_pcap_mb, host_speed_probe=host_speed_probe, baselines=(("local",) if local_baseline else ())
                   + (("jpeg", "raw") if offload_baseline else ()))
    if rate:
        options["rates"] = parse_rates(rate)
    if ues:
        options["ues"] = parse_ues(ues)
    if workload:
        options["workloads"] = tuple(item.strip() for value in workload for item in value.split(",") if item.strip()) \
            or ("",)
    try:
        spec = SweepSpec.full(**options) if full else SweepSpec(**options)
        matrix = points(spec)
        if scheduler is not None:
            from splitbed.sweep.distributed import check_address

            scheduler = check_address(scheduler)
    except SweepSpecError as exc:
        raise CliError(str(exc), SPEC_FIX) from None
    from splitbed.report.budgets import BudgetError, get_budget

    try:  # a typo in the budget is refused now, not after an hour of measuring
        get_budget(budget, None if budgets is None else str(budgets))
    except BudgetError as exc:
        raise CliError(str(exc), "budget names and the file format: docs/REPORT.md, 'Budgets'") from None
    if estimate:
        from splitbed.advise import AdviseError
        from splitbed.sweep.estimate import describe
        from splitbed.sweep.estimate import estimate as predict_wall_time

        planned = workers
        if planned is None and scheduler is not None:
            planned = _count_testbed_workers(scheduler, wait_workers)
        try:
            with console.status("timing partitions on this machine ...") as status:
                result = predict_wall_time(spec, on_model=lambda m: status.update(f"timing {m} ..."),
                                           workers=planned or 1, distributed=scheduler is not None)
        except AdviseError as exc:
            raise CliError(str(exc), SPEC_FIX) from None
        for line in describe(result):
            console.print(line)
        return
    if dry_run:  # reads only: creates and repairs nothing
        from splitbed.sweep.runner import stale_runs

        for note in stale_runs(out):
            console.print(f"[yellow]{out / 'sweep.json'}: {note} (the next run marks it killed)[/yellow]",
                          soft_wrap=True)
        counts = completed_counts(out)
        done = sum(1 for p in matrix if counts[p.key] >= spec.repetitions)
        for p in matrix:
            console.print(f"{counts[p.key]:>4}/{spec.repetitions}  {p.key}")
        console.print(f"{len(matrix)} points, {done} complete, {len(matrix) - done} to measure "
                      f"({spec.repetitions} repetitions + {spec.warmup} warm-up each)")
        return
    with _RichProgress(console) as bar:
        try:
            if scheduler is None:
                outcome = run_sweep(spec, out, progress=bar)
            else:
                from splitbed.sweep.distributed import run_distributed

                outcome = run_distributed(spec, out, scheduler, progress=bar, wait_s=wait_workers)
        except SweepError as exc:
            raise CliError(f"sweep stopped: {exc}", "every finished inference is kept in "
                           f"{out / 'results.jsonl'}; fix the cause, then run the same command to resume",
                           status=1) from None
        except KeyboardInterrupt:
            console.print(f"interrupted: every finished inference is in {out / 'results.jsonl'}; run the same "
                          "command to resume")
            raise typer.Exit(130) from None
    for note in outcome.killed_runs:
        console.print(f"[yellow]earlier run marked killed in sweep.json: {note}[/yellow]", soft_wrap=True)
    dropped = f", {outcome.dropped} frames dropped by the workload" if outcome.dropped else ""
    console.print(f"{len(matrix)} points ({outcome.skipped_points} already complete), {outcome.inferences} "
                  f"inferences this run, {outcome.errors} errors{dropped}, {outcome.wall_s:.0f} s")
    if outcome.incomplete:
        console.print(f"[yellow]{len(outcome.incomplete)} point(s) lack good repetitions; run again to retry[/yellow]")
    finish(out, {p.key for p in matrix}, console, write_report=report, budget=budget, budgets_file=budgets,
           wide=wide, pool_hosts=pool_hosts)  # ends with the table and the report path
    if outcome.incomplete:
        raise typer.Exit(1)


def _count_testbed_workers(scheduler: str, wait_s: float) -> int:
    """How many testbed workers the scheduler has now (for --estimate; nothing is submitted)."""
    from splitbed.sweep.distributed import DistributedError, connect, wait_for_testbed_workers

    try:
        client = connect(scheduler)
        try:
            return len(wait_for_testbed_workers(client, wait_s))
        finally:
            client.close()
    except DistributedError as exc:
        raise CliError(str(exc), "start the cluster first, or give --workers N to plan without it", status=1) \
            from None


def parse_ues(values: list[str]) -> tuple[int, ...]:
    """`--ues 1,2 --ues 8` -> (1, 2, 8): UEs per cell, each 1..32."""
    counts = []
    for value in values:
        for item in value.split(","):
            text = item.strip()
            if not text.isdigit() or not 1 <= int(text) <= 32:
                raise CliError(f"--ues {text!r} is not a number of UEs in 1..32",
                               "give UE counts comma-separated: --ues 1,2,4,8")
            counts.append(int(text))
    return tuple(dict.fromkeys(counts))


def parse_rates(values: list[str]) -> tuple[float, ...]:
    """`--rate 10,20 --rate 50` -> (10.0, 20.0, 50.0); each must be a positive number of Mbit/s."""
    rates = []
    for value in values:
        for item in value.split(","):
            try:
                rate = float(item.strip())
            except ValueError:
                raise CliError(f"--rate {item.strip()!r} is not a number of Mbit/s",
                               "give rates in Mbit/s, comma-separated: --rate 10,20,50,100") from None
            if not 0 < rate <= 100_000:
                raise CliError(f"--rate {rate:g} is outside (0, 100000] Mbit/s", "give positive rates in Mbit/s")
            rates.append(rate)
    return tuple(dict.fromkeys(rates))


def finish(out: Path, keys: set[str], console: Any, *, write_report: bool, budget: str | None = None,
           budgets_file: Path | None = None, wide: bool = False, pool_hosts: bool = False) -> None:
    """Write summary.csv (every point in the results), print this sweep's points, write and name the report."""
    from rich.console import Console

    from splitbed.sweep import read_records, summarise, write_csv
    from splitbed.sweep.summary import SUMMARY_NAME

    read = read_records(out)
    records = read.records
    if read.skipped:  # said, never silent: these lines are in no figure
        number, reason = read.skipped[0]
        console.print(f"[yellow]{len(read.skipped)} line(s) of {out / 'results.jsonl'} left out of the summary "
                      f"(first: line {number}: {reason})[/yellow]", soft_wrap=True)
    warn_random_weights(records)
    from splitbed.report.budgets import get_budget, load_budgets

    path = None if budgets_file is None else str(budgets_file)
    chosen = get_budget(budget, path)
    summaries = summarise(records, pool_hosts=pool_hosts, budgets=list(load_budgets(path).values()))
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
    table, width, hidden = summary_table(shown, wide=wide, budget=chosen)
    Console(width=width, file=console.file).print(table)  # --wide: wider than the terminal, on purpose
    note = dropped_note(hidden, width)
    if note:
        console.print(note)
    speed = host_speed_line(shown)
    if speed:
        console.print(speed, soft_wrap=True, markup=False)
    for line in outlier_lines(shown):
        console.print(line, soft_wrap=True, markup=False)
    draws = draws_line(shown)
    if draws:
        console.print(draws, soft_wrap=True)
    disturbed = stolen_points(shown)
    if disturbed:
        console.print(f"[yellow]{disturbed}[/yellow]", soft_wrap=True)
    hosts = hosts_line(shown, pool_hosts)
    if hosts:
        console.print(f"[yellow]{hosts}[/yellow]", soft_wrap=True)
    console.print(f"Summary (median and 95% CI, p90/p95/p99/max, budget shares per point): {csv_path}",
                  soft_wrap=True)
    if traffic_paths is not None:
        console.print(f"Uplink traffic model per point: {traffic_paths[1]} (CSV: {traffic_paths[0]})", soft_wrap=True)
    if write_report:
        from splitbed.report import build_report

        paths = build_report(out, budget=budget, budgets_file=budgets_file, pool_hosts=pool_hosts)
        console.print(f"Report: {paths.html} (Markdown: {paths.markdown})", soft_wrap=True)
    from splitbed.report import cell

    if any(cell.measured(r) for r in records) and chosen.uplink_latency_ms is not None:  # a sweep with --ues
        cell_paths = cell.write(records, out / "report", chosen.uplink_latency_ms, cell.DEFAULT_PERCENTILE)
        for config in cell.analyse(records, chosen.uplink_latency_ms, cell.DEFAULT_PERCENTILE)["configs"]:
            console.print(f"Cell capacity (p{cell.DEFAULT_PERCENTILE:g} of delivery <= "
                          f"{chosen.uplink_latency_ms:g} ms): {config['capacity_ues'] or 'none'} UE(s) for "
                          f"{config['config']}", soft_wrap=True, markup=False)
        console.print(f"Cell report: {cell_paths['markdown']} (CDFs: {cell_paths['figure']})", soft_wrap=True)


def hosts_line(summaries: list[Any], pool_hosts: bool) -> str | None:
    """Said when points were measured on hosts of different CPU models: kept apart, or pooled on request."""
    from splitbed.sweep.summary import split_by_host

    if pool_hosts:
        mixed = [s for s in summaries if ";" in s.cpu_model]
        return (f"{len(mixed)} point(s) pool records of different CPU models (--pool-hosts): their compute times "
                "mix machines (summary.csv: cpu_model, hosts)") if mixed else None
    split = split_by_host(summaries)
    if not split:
        return None
    return (f"{len(split)} point(s) were measured on hosts of different CPU models: one row per CPU model "
            "(summary.csv: cpu_model, hosts); --pool-hosts pools them")


def warn_random_weights(records: list[dict[str, Any]]) -> None:
    """Records measured with random weights carry the warning; the command says it once (splitbed.cli)."""
    import warnings

    from splitbed.models.weights import RandomWeightsWarning

    for record in records:
        weights = record.get("weights")
        if isinstance(weights, dict) and weights.get("warning"):
            warnings.warn(str(weights["warning"]), RandomWeightsWarning, stacklevel=2)
            return


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


#: The summary table's columns; `drop` orders those hidden to fit a narrow terminal (0: never hidden).
SUMMARY_COLUMNS = (Column("profile"), Column("model"), Column("encoding"), Column("partition"),
                   Column("n", "right", drop=2), Column("uplink bytes", "right", drop=4),
                   Column("local ms", "right", drop=3), Column("delivery ms", "right", drop=5),
                   Column("remote ms", "right", drop=1), Column("e2e ms [95% CI]", "right"),
                   Column("e2e CV %", "right", drop=1), Column("outliers", "right", drop=1))
MODELLED_COLUMN = Column("e2e modelled ms", "right", drop=1)
#: Paced workloads only: frames late (latency from capture over the frame deadline) / frames the overload policy
#: dropped, of the point's frames. Kept at 80 columns longer than the compute and byte columns: without it a paced
#: point's medians hide whether the UE kept up with the camera at all (two header lines keep it narrow).
PACED_COLUMN = Column("late/\ndrop", "right", drop=4)
PACED_CAPTION = ("; late/drop (paced workloads): frames whose latency from capture exceeded the time between "
                 "frames / frames the overload policy dropped, of the point's frames")
ENERGY_COLUMN = Column("UE energy mJ compute+radio (model)", "right", drop=1, wrap=True)
SUMMARY_TITLE = "splitbed sweep: medians [95% CI] per point"
DEVICES_NOTE = ("Devices (docs/DEVICES.md; stretch = emulated by measured time dilation, model = faster than this "
                "host, modelled)")
SUMMARY_CAPTION = ("* = lowest median end-to-end latency (modelled where a device is modelled) for its profile, "
                   "devices, model and encoding; CV = standard "
                   "deviation / mean of e2e; outliers and their causes: below and in summary.csv")


def summary_table(summaries: list[Any], *, width: int | None = None, wide: bool = False,
                  budget: Any = None) -> tuple[Any, int, list[str]]:
    """What a sweep prints at the end: one row per point, the best partition of each (profile, model, encoding)
    starred. It fits `width` (default: the terminal's): one table per (profile, model, encoding), titled with
    them, whose measurement columns are hidden in SUMMARY_COLUMNS' order as needed (names are never cut).
    Returns (renderable, width to print it at, hidden headers); `wide`: one table with every column."""
    from rich import box
    from rich.console import Group
    from rich.text import Text

    from netem.cliapp import terminal_width
    from splitbed.report.budgets import get_budget
    from splitbed.sweep import best_per_group
    from splitbed.sweep.plan import SINGLE_WORKLOAD
    from splitbed.sweep.summary import by_cpu_model

    hosts = by_cpu_model(summaries)  # points measured on several CPU models: a table (and a best) per model
    best = {id(s) for members in hosts.values() for s in best_per_group(members).values()}
    combos = list(dict.fromkeys(s.devices for s in summaries))
    several = len(combos) > 1
    modelled = any(s.modelled for s in summaries)
    paced = any(s.workload != SINGLE_WORKLOAD for s in summaries)
    title = f"{SUMMARY_TITLE}\n{DEVICES_NOTE}: " + "; ".join(combos)
    chosen = budget if budget is not None else get_budget()
    within = Column(f"UL <= {chosen.uplink_latency_ms:g} ms", "right", drop=2)
    columns = [*SUMMARY_COLUMNS[:10], *((PACED_COLUMN,) if paced else ()), within,
               *((MODELLED_COLUMN,) if modelled else ()), ENERGY_COLUMN, *SUMMARY_COLUMNS[10:]]
    rows, styles, groups = [], [], []
    for s in summaries:
        e2e = s.figures["e2e_latency_ms"]
        ci = f" [{e2e.low:.1f}, {e2e.high:.1f}]" if e2e.has_ci else " [n<6: no CI]"
        star = "* " if id(s) in best else ""
        profile = s.profile if len(hosts) == 1 else f"{s.profile} [{s.cpu_model}]"
        compute, radio = s.median("ue_energy_compute_mj"), s.median("ue_energy_radio_mj")
        energy = "-" if compute is None else f"{compute:,.0f}+" + ("n/a" if radio is None else f"{radio:,.0f}")
        row = [profile, s.model, s.carriage, f"{star}{s.partition}", f"{s.n}" + (
            f" ({s.n_errors} err)" if s.n_errors else "") + (f" ({s.ue_late_records} late)" if s.ue_late_records
                                                              else ""),
            _num(s.median("uplink_bytes"), "{:,.0f}"), _num(s.median("local_inference_ms")),
            _num(s.median("delivery_ms")), _num(s.median("remote_inference_ms")),
            (_num(e2e.median) + ci) if e2e.median is not None else "-"]
        if paced:
            row.append(_late_dropped(s))
        row.append(_share(s, chosen.name))
        if modelled:
            row.append(_num(s.median("e2e_latency_modelled_ms")) if s.modelled else "-")
        rows.append([*row, energy, _num(s.e2e_cv_pct), str(len(s.outliers))])
        styles.append("bold" if star else None)
        groups.append((profile, s.model, s.carriage, *((s.devices,) if several else ())))
    if wide:
        if several:
            columns.insert(4, Column("devices"))
            rows = [[*row[:4], group[3], *row[4:]] for row, group in zip(rows, groups, strict=True)]
        return fit_table(title, columns, rows, wide=True, styles=styles,
                         caption=SUMMARY_CAPTION + (PACED_CAPTION if paced else ""))
    target = width or terminal_width()
    measured = columns[3:]  # the group (profile, model, encoding[, devices]) is each table's title
    _, _, hidden = fit_table(None, measured, [row[3:] for row in rows], width=target, box=box.SIMPLE_HEAD,
                             pad_edge=False)
    kept = [c for c in measured if c.header not in hidden]
    narrow = [Column(c.header, c.justify) for c in kept]
    index = [columns.index(c) for c in kept]
    parts: list[Any] = [Text(title, style="bold")]
    for group in dict.fromkeys(groups):
        mine = [r for r, g in enumerate(groups) if g == group]
        table, _, _ = fit_table(" · ".join(group), narrow, [[rows[r][i] for i in index] for r in mine],
                                width=target, styles=[styles[r] for r in mine], title_justify="left",
                                box=box.SIMPLE_HEAD, pad_edge=False)
        parts.append(table)
    parts.append(Text(SUMMARY_CAPTION + f"; UL <= {chosen.uplink_latency_ms:g} ms: uplink deliveries within the "
                      f"budget's UL latency ({chosen.title})" + (PACED_CAPTION if paced else "")))
    return Group(*parts), target, [header.replace("\n", "") for header in hidden]  # one line each in the note


def draws_line(summaries: list[Any]) -> str | None:
    """How many independent channel draws the points' statistics rest on (docs/SWEEP.md), where the link is
    random; None when every link was deterministic."""
    random = [s for s in summaries if s.independent_draws is not None]
    if not random:
        return None
    short = [s for s in random if s.independent_draws < s.n]
    text = (f"Channel draws: {len(random)} point(s) on a random link; their statistics rest on "
            f"{min(s.independent_draws for s in random)}-{max(s.independent_draws for s in random)} independent "
            "draws each (summary.csv: independent_draws)")
    if short:
        text += f"; {len(short)} point(s) on fewer draws than repetitions (records made before per-repetition seeds)"
    return text


def outlier_lines(summaries: list[Any]) -> list[str]:
    """One line per slow single inference, with its cause where the record shows one (splitbed.sweep.outliers)."""
    lines = []
    for s in summaries:
        for outlier in s.outliers:
            lines.append(f"outlier {s.profile}/{s.model}/{s.partition}/{s.carriage} {outlier.describe()}")
        note = s.host_speed_note
        if note:
            lines.append(f"spread {s.profile}/{s.model}/{s.partition}/{s.carriage}: {note}")
    return lines


def host_speed_line(summaries: list[Any]) -> str | None:
    """How fast the host itself was during the points (splitbed.sweep.hostspeed); None when no record says."""
    from splitbed.host.speed import MATMULS_PER_RUN, MATRIX_SIZE

    probed = [s for s in summaries if s.host_speed is not None and s.host_speed.n]
    if not probed:
        return None
    missing = len(summaries) - len(probed)
    parts = []
    for role, who in (("edge", "edge"), ("ue", "UE")):
        cvs = [s.host_speed.cv_pct[role] for s in probed if s.host_speed.cv_pct[role] is not None]
        ms = [s.host_speed.median_ms[role] for s in probed if s.host_speed.median_ms[role] is not None]
        if cvs and ms:
            parts.append(f"{who}'s CPU CV {min(cvs):.1f}-{max(cvs):.1f} % (median {min(ms):.1f}-{max(ms):.1f} ms)")
    bursts = sum(1 for s in probed if s.host_speed.burst_runs)
    where = ("between the inferences" if not bursts else
             f"between the inferences, and in bursts before/after the stream of {bursts} paced point(s) with no "
             "room between their frames")
    return (f"Host speed, measured: a fixed reference workload (float32 {MATRIX_SIZE}x{MATRIX_SIZE} matrix product x "
            f"{MATMULS_PER_RUN}, one thread) run on each node's CPUs {where}, {len(probed)} point(s): "
            + "; ".join(parts) + " per point (summary.csv: host_speed_*; a CV near e2e's means the host's speed, "
            "not the testbed, set the spread)" + (f"; none in {missing} point(s): measured without it"
                                                  if missing else ""))


def _late_dropped(summary: Any) -> str:
    """`late/dropped` of a paced point (`2/1`: two of its frames late, one dropped), `-` for a back-to-back one."""
    from splitbed.sweep.plan import SINGLE_WORKLOAD

    if summary.workload == SINGLE_WORKLOAD:
        return "-"
    return f"{summary.frames_late}/{summary.frames_dropped}"


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
            task = next(t for t in self.progress.tasks if t.id == self.task)
            if task.total is not None and task.completed >= task.total:  # a warm-up beyond --warmup (not settled)
                self.progress.update(self.task, total=task.total + 1)
            self.progress.advance(self.task)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
