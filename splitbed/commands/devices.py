"""`splitbed devices`: the device profiles (built-in, or a TOML file) with their figures and sources; `--markdown`
prints the table docs/DEVICES.md carries (a test keeps the two equal)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

MODELS = ("vgg16", "resnet50", "mobilenet_v2")  # table columns; every registered model (a test checks)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 1 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def device_rows(profiles: list[Any]) -> list[dict[str, str]]:
    """One row of strings per profile: what the table and the markdown show."""
    rows = []
    for p in profiles:
        latency = {}
        for model in MODELS:
            lat = p.latencies.get(model)
            if p.is_host:
                latency[model] = "host's own"
            elif lat is None or lat.ms(p.precision) is None:
                latency[model] = "-"
            else:
                cell = f"{_ms(lat.ms(p.precision))} ms"
                other = "int8" if p.precision == "fp32" else "fp32"
                if lat.ms(other) is not None:
                    cell += f" ({other} {_ms(lat.ms(other))})"
                latency[model] = cell + (" derived" if lat.derived is not None else "")
        radio = ", ".join(f"{a}: {r.energy_per_bit_nj:g} nJ/bit + {r.base_power_mw:g} mW" for a, r in p.radio.items())
        radio += "".join(f", {a}: none" for a in p.radio_unavailable)
        rows.append({
            "name": p.name, "role": p.role, "precision": p.precision or "-",
            **{m: latency[m] for m in MODELS},
            "compute": "-" if p.compute_power is None else f"{p.compute_power.watts:g} W",
            "idle": "-" if p.idle_power is None else f"{p.idle_power.watts:g} W",
            "radio": radio.strip(", ") or "-", "description": p.description, "source": p.source,
        })
    return rows


def devices_markdown(profiles: list[Any]) -> str:
    """The device table of docs/DEVICES.md."""
    lines = ["| name | role | precision | VGG16 | ResNet50 | MobileNetV2 | compute power | idle power | uplink radio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in device_rows(profiles):
        lines.append(f"| `{r['name']}` | {r['role']} | {r['precision']} | {r['vgg16']} | {r['resnet50']} | "
                     f"{r['mobilenet_v2']} | {r['compute']} | {r['idle']} | {r['radio']} |")
    lines.append("")
    for r in device_rows(profiles):
        lines.append(f"- **`{r['name']}`**: {r['description']} Sources: {r['source']}")
    return "\n".join(lines) + "\n"


def devices(
    profile: Annotated[list[str] | None, typer.Argument(help="built-in names or TOML paths (default: all built-ins)")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the profiles as JSON (every figure and source)")]
    = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print the docs/DEVICES.md table")] = False,
) -> None:
    """List device profiles: latency per model, power, radio models, and the public source of every figure."""
    from rich.console import Console
    from rich.table import Table

    from splitbed.devices import DeviceError, builtin_profiles, load

    try:
        profiles = [load(p) for p in profile] if profile else builtin_profiles()
    except DeviceError as exc:
        typer.echo(f"splitbed devices: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    if markdown:
        print(devices_markdown(profiles), end="")
        return
    table = Table(title="device profiles (latency: full model, batch 1, at the profile's precision)", show_lines=True)
    for column in ("name", "role", "precision", "VGG16", "ResNet50", "MobileNetV2", "compute", "idle", "uplink radio",
                   "sources"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for r in device_rows(profiles):
        table.add_row(r["name"], r["role"], r["precision"], r["vgg16"], r["resnet50"], r["mobilenet_v2"],
                      r["compute"], r["idle"], r["radio"], r["source"])
    Console(width=max(170, Console().width)).print(table)
    typer.echo("Every figure's source in full: splitbed devices --json, or the profile files (docs/DEVICES.md).")


def register(app: typer.Typer) -> None:
    app.command("devices")(devices)
