"""`splitbed format ...`: inspect AI intermediate data streams (docs/FORMAT.md) and list compression profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _describe(event: Any) -> dict[str, Any]:
    from splitbed.format import AipsActivated, AipsEnded, FormatErrorEvent, TensorsDecoded, UnknownUnit

    if isinstance(event, AipsActivated):
        a = event.aips
        return {"event": "AipsActivated", "offset": event.stream_offset, "aips_id": a.aips_id,
                "partition_id": a.partition_id, "tensors": [
                    {"tensor_id": t.tensor_id, "dtype": t.dtype.name.lower(), "shape": list(t.shape),
                     "profile": t.compression_profile_id, "inferred_length": t.inferred_length} for t in a.tensors]}
    if isinstance(event, TensorsDecoded):
        return {"event": "TensorsDecoded", "offset": event.stream_offset, "aips_id": event.aips_id,
                "unit_size": event.unit_size, "payload_sizes": list(event.payload_sizes),
                "decoded_sizes": list(event.decoded_sizes)}
    if isinstance(event, AipsEnded):
        return {"event": "AipsEnded", "aips_id": event.aips_id, "reason": event.reason.value, "detail": event.detail}
    if isinstance(event, UnknownUnit):
        return {"event": "UnknownUnit", "offset": event.stream_offset, "type": event.unit_type,
                "length": event.length}
    assert isinstance(event, FormatErrorEvent)
    return {"event": "FormatErrorEvent", "offset": event.stream_offset, "code": event.code.value,
            "recoverable": event.recoverable, "message": event.message}


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="Inspect AI intermediate data streams (docs/FORMAT.md) and list "
                        "the compression profiles.")
    app.add_typer(group, name="format")

    @group.command()
    def decode(
        path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a file holding a stream of TLV units")],
        json_output: bool = typer.Option(False, "--json", help="one JSON object per event"),
        max_unit_size: int = typer.Option(64 * 2**20, help="receiver cap on one unit's value, bytes"),
    ) -> None:
        """Decode a stream file and print every event (exit 1 if any error event was reported)."""
        from rich.console import Console

        from splitbed.format import Decoder, FormatErrorEvent

        decoder = Decoder(max_unit_size=max_unit_size)
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                decoder.feed(chunk)
                if decoder.broken:
                    break
        events = decoder.events()
        if not decoder.broken and not (events and isinstance(events[-1], FormatErrorEvent)
                                       and not events[-1].recoverable):
            decoder.end_of_stream()
            events += decoder.events()
        console = Console()
        for event in events:
            row = _describe(event)
            if json_output:
                typer.echo(json.dumps(row))
            else:
                name = row.pop("event")
                style = "red" if name == "FormatErrorEvent" else "bold" if name == "AipsActivated" else None
                fields = " ".join(f"{key}={json.dumps(value)}" for key, value in row.items())
                console.print(f"{name} {fields}", style=style, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1 if any(isinstance(e, FormatErrorEvent) for e in events) else 0)

    @group.command()
    def profiles() -> None:
        """The compression profiles: id, name, lossless, dtypes they apply to, error bound."""
        from rich.console import Console
        from rich.table import Table

        from splitbed.format import PROFILES, DType

        table = Table(title="compression profiles (docs/FORMAT.md section 7)")
        for col in ("id", "name", "lossless", "applies to", "params", "error bound"):
            table.add_column(col)
        for p in PROFILES.values():
            dtypes = "all" if len(p.transform.dtypes) == len(DType) else p.dtypes_text
            table.add_row(str(p.profile_id), p.name, "yes" if p.lossless else "no", dtypes,
                          str(p.param_length), p.error_bound)
        Console().print(table)
