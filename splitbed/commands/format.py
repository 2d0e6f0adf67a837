"""`splitbed format ...`: inspect AI intermediate data streams (docs/FORMAT.md), also inside packet captures
(each TCP stream reassembled, splitbed.traffic.pcapdecode), and list compression profiles."""

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


def _print_event(row: dict[str, Any], json_output: bool, console: Any, indent: str = "") -> None:
    if json_output:
        typer.echo(json.dumps(row))
        return
    row = dict(row)
    name = row.pop("event")
    row.pop("stream", None)
    control = row.pop("control", None)
    style = "red" if name == "FormatErrorEvent" else "bold" if name == "AipsActivated" else None
    fields = " ".join(f"{key}={json.dumps(value)}" for key, value in row.items())
    console.print(f"{indent}{name} {fields}" + (f" {control}" if control else ""), style=style, markup=False,
                  highlight=False, soft_wrap=True)


def _decode_pcap(path: Path, json_output: bool, max_unit_size: int, console: Any) -> int:
    """Every unit stream of the capture: a header line per direction, then its events; 1 on any format error."""
    from netem.errors import CaptureError
    from splitbed.format import FormatErrorEvent, UnknownUnit
    from splitbed.traffic.pcapdecode import control_text, decode_events, unit_name, unit_streams

    try:
        streams = unit_streams(path)
    except CaptureError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    failed = False
    decoded = 0
    for item in streams:
        header = {"event": "Stream", "stream": item.label, "bytes": len(item.stream), "units": item.units,
                  "tlv": item.tlv, "note": item.note}
        if json_output:
            typer.echo(json.dumps(header))
        else:
            what = f"{item.units} units, {len(item.stream):,} bytes" if item.tlv else f"{len(item.stream):,} bytes"
            console.print(f"stream {item.label}: {what}" + (f" ({item.note})" if item.note else ""),
                          style="bold" if item.tlv else "dim", markup=False, highlight=False, soft_wrap=True)
        if not item.tlv:
            continue
        decoded += 1
        stream = item.stream
        for event in decode_events(stream, max_unit_size):
            row = {"stream": item.label, **_describe(event)}
            if isinstance(event, UnknownUnit):
                row["name"] = unit_name(event.unit_type)
                text = control_text(stream, event.stream_offset, event.unit_type, event.length + 5)
                if text is not None:
                    row["control"] = text
            failed |= isinstance(event, FormatErrorEvent)
            _print_event(row, json_output, console, "  ")
    if decoded == 0 and not json_output:
        console.print(f"no AIPS/TLV unit stream in {path} ({len(streams)} TCP directions with payload)",
                      markup=False, highlight=False, soft_wrap=True)
    return 1 if failed else 0


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="Inspect AI intermediate data streams (docs/FORMAT.md) and list "
                        "the compression profiles.")
    app.add_typer(group, name="format")

    @group.command()
    def decode(
        path: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                             help="a file holding a stream of TLV units, or a pcap/pcapng capture")],
        json_output: bool = typer.Option(False, "--json", help="one JSON object per event"),
        max_unit_size: int = typer.Option(64 * 2**20, help="receiver cap on one unit's value, bytes"),
    ) -> None:
        """Decode a stream file, or every AIPS/TLV stream of a packet capture (each TCP stream reassembled), and
        print every event (exit 1 if any error event was reported)."""
        from rich.console import Console

        from splitbed.format import Decoder, FormatErrorEvent
        from splitbed.traffic.pcapdecode import is_pcap

        console = Console()
        if is_pcap(path):
            raise typer.Exit(_decode_pcap(path, json_output, max_unit_size, console))
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
        for event in events:
            _print_event(_describe(event), json_output, console)
        raise typer.Exit(1 if any(isinstance(e, FormatErrorEvent) for e in events) else 0)

    @group.command()
    def dissector(
        path_only: bool = typer.Option(False, "--path", help="print only the Lua file's path"),
    ) -> None:
        """Where the Wireshark dissector of the format and the session's control units is, and how to load it."""
        from splitbed.traffic.pcapdecode import dissector_path

        path = dissector_path()
        if path_only:
            typer.echo(str(path))
            return
        typer.echo(f"Wireshark dissector (Lua): {path}\n"
                   f"  wireshark -X lua_script:{path} capture.pcap\n"
                   f"  tshark -X lua_script:{path} -r capture.pcap -Y splitbed -V\n"
                   "  or copy it into ~/.local/lib/wireshark/plugins/ to load it always (docs/FORMAT.md, "
                   "\"Wireshark\")")

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
