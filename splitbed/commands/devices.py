"""`splitbed devices`: the device profiles (built-in, or a TOML file) with their figures and sources; `--markdown`
prints the table docs/DEVICES.md carries (a test keeps the two equal)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from netem.cliapp import CliError, Column, dropped_note, fit_table

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


#: The table's columns; `drop` orders those hidden to fit a narrow terminal (0: never hidden).
DEVICE_COLUMNS = (Column("name"), Column("role", drop=5), Column("precision", drop=4),
                  Column("VGG16", "right", wrap=True), Column("ResNet50", "right", wrap=True),
                  Column("MobileNetV2", "right", wrap=True), Column("compute", "right", drop=6),
                  Column("idle", "right", drop=3), Column("uplink radio", drop=2, wrap=True),
                  Column("sources", drop=1, wrap=True))


def devices(
    device: Annotated[str | None, typer.Argument(help="one device profile: built-in name or TOML path (default: "
                                                 "every built-in)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the profiles as JSON (every figure and source)")]
    = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print the docs/DEVICES.md table")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="every column (and the full sources), however wide")] = False,
) -> None:
    """List device profiles: latency per model, power, radio models, and the public source of every figure."""
    from rich import box
    from rich.console import Console

    from splitbed.devices import DeviceError, builtin_profiles, load

    try:
        profiles = [load(device)] if device else builtin_profiles()
    except DeviceError as exc:
        raise CliError(str(exc), "built-in devices: 'splitbed devices'; a profile file's keys: docs/DEVICES.md") \
            from None
    if as_json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    if markdown:
        print(devices_markdown(profiles), end="")
        return
    rows = [[r["name"], r["role"], r["precision"], r["vgg16"], r["resnet50"], r["mobilenet_v2"], r["compute"],
             r["idle"], r["radio"], r["source"]] for r in device_rows(profiles)]
    table, width, hidden = fit_table("device profiles (latency: full model, batch 1, at the profile's precision)",
                                     DEVICE_COLUMNS, rows, wide=wide, box=box.SIMPLE_HEAD, show_lines=True)
    console = Console(width=width)  # --wide: wider than the terminal, on purpose
    console.print(table)
    note = dropped_note(hidden, width)
    if note:
        console.print(note)
    console.print("Every figure's source in full: splitbed devices --json, or the profile files (docs/DEVICES.md).")


def register(app: typer.Typer) -> None:
    app.command("devices")(devices)
