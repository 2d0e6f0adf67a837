"""`splitbed advise`: predict the best partition of a model for a link profile and a pair of devices (UE default
phone-midrange, edge default host) from the device profiles, each partition's share of the model measured on
this machine, intermediate data sizes and the link profile (splitbed.advise), by end-to-end latency or by the
UE's energy; with --measure, run the real testbed (the same devices emulated) for each partition and show
prediction and measurement side by side (docs/SWEEP.md, "Advisor")."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box

from netem.cliapp import CliError, Column, check_writable, dropped_note, fit_table


def advise(
    model: str = typer.Option(..., "--model", "-m", help="registered model name"),
    profile: str = typer.Option(..., help="link profile name or TOML path"),
    partition: Annotated[list[str] | None, typer.Option(
        "--partition", "-p", help="partitions to consider (names, ids, `examples`, `all`; default all)")] = None,
    encoding: str = typer.Option("tlv", help="tlv or json-baseline"),
    compression: str = typer.Option("none", help="compression profile (tlv)"),
    ue_device: str = typer.Option("phone-midrange", "--ue-device", help="UE device profile (`splitbed devices`) or "
                                  "TOML path; host = this machine's speed"),
    edge_device: str = typer.Option("host", "--edge-device", help="edge device profile (host = this machine's "
                                    "speed; e.g. edge-l4)"),
    objective: str = typer.Option("latency", help="rank by latency (end-to-end) or energy (the UE's, model-based: "
                                  "compute + uplink radio)"),
    unshaped_rate_mbit: float | None = typer.Option(None, help="rate assumed for an unshaped direction "
                                                    "(default: no transmission time)"),
    repeats: int = typer.Option(10, help="timed runs per head/tail/encode (median)"),
    weights: str = typer.Option("auto", help="auto, imagenet, random:SEED or a weights file"),
    image: str = typer.Option("builtin:chelsea", help="input image file, or builtin:NAME"),
    measure: bool = typer.Option(False, help="also measure every partition on the real testbed and compare"),
    repetitions: int = typer.Option(6, help="--measure: inferences per partition (>= 6 gives a 95% CI)"),
    backend: str = typer.Option("auto", help="--measure: link backend (auto, kernel, userspace)"),
    json_out: Annotated[Path | None, typer.Option("--json", help="also write timings, predictions (and "
                                                  "measurements) to this JSON file")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="every column of the table, however wide")] = False,
) -> None:
    """Rank a model's partitions for a link profile (predicted end-to-end latency), best first."""
    from rich.console import Console

    from netem.errors import NetemError
    from splitbed.advise import (
        OBJECTIVES,
        AdviseError,
        LinkModel,
        compare,
        measure_model,
        measure_on_testbed,
        predict,
    )
    from splitbed.devices import DeviceError
    from splitbed.devices import load as load_device
    from splitbed.sweep.plan import SweepSpecError

    check_inputs(model, partition, weights, image, encoding, compression, backend)
    if json_out is not None:
        check_writable(json_out, "--json")
    if objective not in OBJECTIVES:
        raise CliError(f"--objective is {objective!r}", f"use one of {', '.join(OBJECTIVES)}")
    try:
        ue, edge = load_device(ue_device), load_device(edge_device)
        ue.check_role("ue")
        edge.check_role("edge")
    except DeviceError as exc:
        raise CliError(str(exc), "device profiles: 'splitbed devices' (docs/DEVICES.md)") from None
    console = Console()  # the terminal's width; 80 into a file or pipe (COLUMNS sets another)
    # tf.function retracing notices: every partition is its own sub-model, so retracing is expected
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        link = LinkModel.from_profile(profile, unshaped_rate_mbit=unshaped_rate_mbit)
        with console.status("timing partitions on this machine ...") as status:
            timing = measure_model(model, partitions=partition, weights=weights, image=image, encoding=encoding,
                                   compression=compression, repeats=repeats,
                                   on_partition=lambda name: status.update(f"building {name} ..."))
        predictions = predict(timing, link, ue_device=ue, edge_device=edge, objective=objective)
    except (AdviseError, SweepSpecError, DeviceError, NetemError) as exc:
        raise CliError(str(exc), "see 'splitbed advise --help'; models and partitions: 'splitbed partitions "
                       "[MODEL]'; profiles: 'netem profiles'; devices: 'splitbed devices'") from None
    comparison = None
    if measure:
        from splitbed.testbed import Testbed

        with console.status(f"measuring on the testbed ({profile}; UE {ue.name}, edge {edge.name}) ..."):
            with Testbed(profile, backend=backend, models=[model], weights=weights, ue_device=ue_device,
                         edge_device=edge_device) as bed:
                measured = measure_on_testbed(bed, model, [p.partition for p in predictions], encoding=encoding,
                                              compression=compression, image=image, repetitions=repetitions,
                                              objective=objective)
        comparison = compare(predictions, measured, objective)
    table, width, hidden = _table(model, profile, link, predictions, comparison, ue.name, edge.name, objective,
                                  wide=wide)
    Console(width=width, file=console.file).print(table)  # --wide: wider than the terminal, on purpose
    note = dropped_note(hidden, width)
    if note:
        console.print(note)
    best = predictions[0]
    energy = "" if best.ue_energy_mj is None else f", UE energy {best.ue_energy_mj:,.0f} mJ (model)"
    console.print(f"Predicted best partition by {objective}: [bold]{best.partition}[/bold] ({best.e2e_ms:.1f} ms "
                  f"end-to-end{energy}); UE {ue.name}, edge {edge.name} (docs/DEVICES.md)")
    if comparison is not None:
        console.print(f"Measured best partition: [bold]{comparison.measured_best}[/bold]; Spearman rank correlation "
                      f"predicted vs measured: {comparison.spearman:.2f}; pairs ordered against a clear "
                      f"measurement (non-overlapping 95% CIs): {comparison.contradictions or 'none'}")
    if json_out:
        payload: dict[str, Any] = {"timing": timing.to_dict(), "link": _link_dict(link), "objective": objective,
                                   "ue_device": ue.to_dict(), "edge_device": edge.to_dict(),
                                   "predictions": [p.__dict__ for p in predictions]}
        if comparison is not None:
            payload["measured"] = {p.partition: m.__dict__ for p, m in comparison.rows}
            payload["spearman"] = comparison.spearman
        Path(json_out).write_text(json.dumps(payload, indent=2))
        console.print(f"written: {json_out}")


def check_inputs(model: str, partitions: list[str] | None, weights: str, image: str, encoding: str,
                 compression: str, backend: str) -> None:
    """Refuse a typo in any name before TensorFlow starts (the timing runs for minutes)."""
    from splitbed.models.errors import ModelError
    from splitbed.models.weights import check_spec
    from splitbed.nodes.errors import NodeError
    from splitbed.nodes.images import check_image
    from splitbed.sweep.plan import (
        BACKENDS,
        ENCODINGS,
        SweepSpecError,
        canonical_compressions,
        resolve_partitions,
    )

    fix = "see 'splitbed advise --help'; models and partitions: 'splitbed partitions [MODEL]'"
    try:
        resolve_partitions(model, list(partitions) if partitions else ["all"])
        canonical_compressions([compression])
        check_spec(weights)
        check_image(image)
    except (SweepSpecError, ModelError, NodeError) as exc:
        raise CliError(str(exc), fix) from None
    if encoding not in ENCODINGS:
        raise CliError(f"unknown encoding {encoding!r}", f"use one of {', '.join(ENCODINGS)}")
    if backend not in BACKENDS:
        raise CliError(f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")


def _link_dict(link: Any) -> dict[str, Any]:
    def direction(model: Any) -> dict[str, Any]:  # a trace is named by its file, not copied (1,800 values)
        trace = model.trace
        return {"rate_mbit": model.rate_mbit, "delay_ms": model.delay_ms, "rate_note": model.rate_note,
                "trace": None if trace is None else {"source": trace.source, "period_ms": trace.period_ms,
                                                     "mean_rate_mbit": trace.mean_rate_mbit()}}

    return {"profile": link.profile, "uplink": direction(link.uplink), "downlink": direction(link.downlink),
            "slow_start_after_idle": link.slow_start_after_idle, "radio": link.radio}


def _mj(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


ADVISE_COLUMNS = (Column("rank", "right", drop=5), Column("partition"), Column("uplink bytes", "right", drop=4),
                  Column("head ms (UE)", "right", drop=8), Column("local ms", "right", drop=3),
                  Column("uplink ms", "right", drop=6), Column("tail ms (edge)", "right", drop=9),
                  Column("remote ms", "right", drop=1), Column("downlink ms", "right", drop=2),
                  Column("predicted e2e ms", "right"),
                  Column("UE energy mJ compute + radio (model)", "right", drop=10))


def _table(model: str, profile: str, link: Any, predictions: list[Any], comparison: Any, ue: str, edge: str,
           objective: str, *, wide: bool = False) -> tuple[Any, int, list[str]]:
    """The ranking, fitted to the terminal (netem.cliapp.fit_table): (table, width, hidden columns)."""
    measured = {p.partition: m for p, m in comparison.rows} if comparison is not None else {}
    order = sorted(measured, key=lambda k: measured[k].median_ms)
    unit = "mJ" if objective == "energy" else "ms"
    columns = [*ADVISE_COLUMNS]
    if comparison is not None:
        columns += [Column(f"measured {'UE energy' if objective == 'energy' else 'e2e'} {unit} [95% CI]", "right"),
                    Column("measured rank", "right", drop=7)]
    rows, styles = [], []
    for rank, p in enumerate(predictions, start=1):
        energy = "n/a" if p.compute_mj is None else f"{_mj(p.compute_mj)} + {_mj(p.radio_mj)}"
        row = [str(rank), p.partition + (" +" if p.slow_start else ""), f"{p.uplink_bytes:,}",
               f"{p.head_ms:.1f}", f"{p.local_ms:.1f}", f"{p.uplink_ms:.1f}", f"{p.tail_ms:.2f}", f"{p.remote_ms:.1f}",
               f"{p.downlink_ms:.1f}", f"{p.e2e_ms:.1f}", energy]
        if comparison is not None:
            m = measured.get(p.partition)
            ci = f" [{m.low_ms:.1f}, {m.high_ms:.1f}]" if m is not None and m.low_ms is not None else ""
            row += [f"{m.median_ms:.1f}{ci}" if m else "-", str(order.index(p.partition) + 1) if m else "-"]
        rows.append(row)
        styles.append("bold" if rank == 1 else None)
    caption = None
    if any(p.slow_start for p in predictions):
        caption = ("+ = the uplink transfer pays round trips for its TCP window: after the idle of each cycle "
                   "Linux halves the window once per retransmission timeout (net.ipv4.tcp_slow_start_after_idle "
                   "= 1), and it starts below what the transfer or the link's bandwidth-delay product needs; the "
                   "prediction adds those round trips")
    title = (f"{model} on {profile} (uplink {link.uplink.rate_note}, {link.uplink.delay_ms:g} ms; radio "
             f"{link.radio or 'not stated'}), UE {ue}, edge {edge}: predicted, ranked by {objective}")
    return fit_table(title, columns, rows, wide=wide, styles=styles, caption=caption, box=box.SIMPLE_HEAD)


def register(app: typer.Typer) -> None:
    app.command("advise")(advise)
