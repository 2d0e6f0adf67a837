"""`splitbed advise`: predict the best partition of a model for a link profile and a pair of devices (UE default
phone-midrange, edge default host) from the device profiles, each partition's share of the model measured on
this machine, intermediate data sizes and the link profile (splitbed.advise), by end-to-end latency or by the
UE's energy; with --measure, run the real testbed (the same devices emulated) for each partition and show
prediction and measurement side by side (docs/SWEEP.md, "Advisor")."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def advise(
    model: str = typer.Option(..., "--model", "-m", help="registered model name"),
    profile: str = typer.Option(..., help="link profile name or TOML path"),
    partition: Annotated[list[str] | None, typer.Option(
        "--partition", "-p", help="partitions to consider (names, ids, `seed`, `all`; default all)")] = None,
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
    json_out: str | None = typer.Option(None, "--json", help="also write timings, predictions (and measurements) "
                                        "to this JSON file"),
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

    console = Console(width=None if sys.stdout.isatty() else 170)
    # tf.function retracing notices: every partition is its own sub-model, so retracing is expected
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if objective not in OBJECTIVES:
        raise typer.BadParameter(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    try:
        ue, edge = load_device(ue_device), load_device(edge_device)
        ue.check_role("ue")
        edge.check_role("edge")
        link = LinkModel.from_profile(profile, unshaped_rate_mbit=unshaped_rate_mbit)
        with console.status("timing partitions on this machine ...") as status:
            timing = measure_model(model, partitions=partition, weights=weights, image=image, encoding=encoding,
                                   compression=compression, repeats=repeats,
                                   on_partition=lambda name: status.update(f"building {name} ..."))
        predictions = predict(timing, link, ue_device=ue, edge_device=edge, objective=objective)
    except (AdviseError, SweepSpecError, DeviceError, NetemError) as exc:
        raise typer.BadParameter(str(exc)) from None
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
    console.print(_table(model, profile, link, predictions, comparison, ue.name, edge.name, objective))
    best = predictions[0]
    energy = "" if best.ue_energy_mj is None else f", UE energy {best.ue_energy_mj:,.0f} mJ (model)"
    console.print(f"Predicted best partition by {objective}: [bold]{best.partition}[/bold] ({best.e2e_ms:.1f} ms "
                  f"end-to-end{energy}); UE {ue.name}, edge {edge.name} (docs/DEVICES.md)")
    if comparison is not None:
        console.print(f"Measured best partition: [bold]{comparison.measured_best}[/bold]; Spearman rank correlation "
                      f"predicted vs measured: {comparison.spearman:.2f}; pairs ordered against a clear "
                      f"measurement (non-overlapping 95% CIs): {comparison.contradictions or 'none'}")
    if timing.weights.get("source") == "random":
        console.print("[yellow]random weights: timings and sizes hold; predictions of the model do not[/yellow]")
    if json_out:
        payload: dict[str, Any] = {"timing": timing.to_dict(), "link": _link_dict(link), "objective": objective,
                                   "ue_device": ue.to_dict(), "edge_device": edge.to_dict(),
                                   "predictions": [p.__dict__ for p in predictions]}
        if comparison is not None:
            payload["measured"] = {p.partition: m.__dict__ for p, m in comparison.rows}
            payload["spearman"] = comparison.spearman
        Path(json_out).write_text(json.dumps(payload, indent=2))
        console.print(f"written: {json_out}")


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


def _table(model: str, profile: str, link: Any, predictions: list[Any], comparison: Any, ue: str, edge: str,
           objective: str) -> Any:
    from rich.table import Table

    measured = {p.partition: m for p, m in comparison.rows} if comparison is not None else {}
    order = sorted(measured, key=lambda k: measured[k].median_ms)
    unit = "mJ" if objective == "energy" else "ms"
    table = Table(title=f"{model} on {profile} (uplink {link.uplink.rate_note}, {link.uplink.delay_ms:g} ms; radio "
                        f"{link.radio or 'not stated'}), UE {ue}, edge {edge}: predicted, ranked by {objective}")
    for header in ("rank", "partition", "uplink bytes", "head ms (UE)", "local ms", "uplink ms", "tail ms (edge)",
                   "remote ms", "downlink ms", "predicted e2e ms", "UE energy mJ compute + radio (model)"):
        table.add_column(header, justify="left" if header == "partition" else "right")
    if comparison is not None:
        table.add_column(f"measured {'UE energy' if objective == 'energy' else 'e2e'} {unit} [95% CI]",
                         justify="right")
        table.add_column("measured rank", justify="right")
    for rank, p in enumerate(predictions, start=1):
        energy = "n/a" if p.compute_mj is None else f"{_mj(p.compute_mj)} + {_mj(p.radio_mj)}"
        row = [str(rank), p.partition + (" (slow start)" if p.slow_start else ""), f"{p.uplink_bytes:,}",
               f"{p.head_ms:.1f}", f"{p.local_ms:.1f}", f"{p.uplink_ms:.1f}", f"{p.tail_ms:.2f}", f"{p.remote_ms:.1f}",
               f"{p.downlink_ms:.1f}", f"{p.e2e_ms:.1f}", energy]
        if comparison is not None:
            m = measured.get(p.partition)
            ci = f" [{m.low_ms:.1f}, {m.high_ms:.1f}]" if m is not None and m.low_ms is not None else ""
            row += [f"{m.median_ms:.1f}{ci}" if m else "-", str(order.index(p.partition) + 1) if m else "-"]
        table.add_row(*row, style="bold" if rank == 1 else None)
    return table


def register(app: typer.Typer) -> None:
    app.command("advise")(advise)
