"""`splitbed partitions [MODEL]`: each candidate partition's crossing tensors, raw bytes, params and MACs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich import box

from netem.cliapp import CliError, Column, dropped_note, fit_table


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


#: `splitbed partitions MODEL`: hidden in this order to fit the terminal (names and shapes never cut).
PARTITION_COLUMNS = (Column("id", "right"), Column("partition"), Column("crossing tensor", drop=5),
                     Column("dtype shape"), Column("raw bytes", "right"), Column("head params", "right", drop=4),
                     Column("tail params", "right", drop=3), Column("head MACs", "right", drop=2),
                     Column("tail MACs", "right", drop=1))


def register(app: typer.Typer) -> None:
    @app.command()
    def partitions(
        model: str = typer.Argument(None, help="registered model (omit to list models)"),
        json_output: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
        layers: bool = typer.Option(False, "--layers", help="per-layer output sizes, params and MACs instead"),
        verify: bool = typer.Option(False, "--verify",
                                    help="build every head/tail and check max |tail(head(x)) - full(x)| <= 1e-5"),
        weights: str = typer.Option("auto", "--weights", help="with --verify: auto, imagenet, random:SEED or a file"),
        image: str = typer.Option(None, "--image", help="with --verify: image file (default: scikit-image's cat)"),
        wide: bool = typer.Option(False, "--wide", help="every column of the partition table, however wide"),
        onnx: bool = typer.Option(False, "--onnx", help="convert MODEL to ONNX (cached; --weights) and list the "
                                                         "cuts of the ONNX graph"),
    ) -> None:
        """Candidate partitions of MODEL (224x224, float32, one sample): crossing tensors (name, shape, dtype,
        raw bytes), head/tail parameters and multiply-accumulates (FLOPs = 2 x MACs). MODEL may be an .onnx
        file: every candidate cut of its graph (docs/MODELS.md, "ONNX")."""
        from rich.console import Console
        from rich.table import Table

        from splitbed.models import ModelError, registry
        from splitbed.models.onnx import is_onnx_path

        if not (verify or onnx) and weights != "auto":
            raise CliError("--weights applies only with --verify or --onnx", "add one of them, or leave it out")
        if not verify and image is not None:
            raise CliError("--image applies only with --verify", "add --verify, or leave it out")
        if verify or onnx:
            from splitbed.models.weights import check_spec

            check_spec(weights)
            if image is not None and not Path(image).is_file():
                raise CliError(f"--image {image}: no such file", "give an image file (default: scikit-image's cat)")
        console = Console(width=max(Console().width, 150))
        if model is not None and (onnx or is_onnx_path(model)):
            if layers or verify:
                raise CliError("--layers and --verify are for registered Keras models; an ONNX listing takes "
                               "--json only", "leave out --layers and --verify")
            raise typer.Exit(_onnx_listing(console, model, weights if onnx else None, json_output))
        if model is None:
            table = Table(title="registered models")
            for col in ("model", "input", "partitions", "data file"):
                table.add_column(col)
            for name in registry.names():
                spec = registry.get(name)
                table.add_row(name, "x".join(map(str, spec.input_shape)), str(len(spec.partitions)),
                              f"splitbed/models/data/{name}.toml")
            console.print(table)
            return
        from splitbed.models import summary

        if verify:
            raise typer.Exit(_verify(console, model, weights, image, json_output))
        try:
            if layers:
                rows = summary.layer_rows(model)
            else:
                spec, prow = summary.partition_rows(model)
        except ModelError as exc:
            raise CliError(str(exc), "list the models with 'splitbed partitions'") from None
        if layers:
            if json_output:
                typer.echo(json.dumps({"model": model, "layers": rows}, indent=1))
                return
            table = Table(title=f"{model}: layers (topological order)")
            for col in ("layer", "kind", "output shape", "output bytes", "params", "MACs"):
                table.add_column(col, justify="right" if col in ("output bytes", "params", "MACs") else "left")
            for r in rows:
                table.add_row(r["name"], r["kind"], str(tuple(r["output_shape"])), f"{r['output_bytes']:,}",
                              f"{r['params']:,}", f"{r['macs']:,}")
            console.print(table)
            return
        data = [r.to_dict() for r in prow]
        if json_output:
            typer.echo(json.dumps({"model": spec.name, "input_shape": list(spec.input_shape), "partitions": data},
                                  indent=1))
            return
        title = (f"{spec.name}: candidate partitions (per sample, {spec.input_shape[0]}x{spec.input_shape[1]}; "
                 "MACs: FLOPs = 2 x MACs)")
        rows = []
        for d in data:
            for k, t in enumerate(d["tensors"]):
                first = k == 0
                rows.append([str(d["partition_id"]) if first else "", d["name"] if first else "", t["name"],
                             f"{t['dtype']} {tuple(t['shape'])}", f"{t['raw_bytes']:,}",
                             f"{d['head_params']:,}" if first else "", f"{d['tail_params']:,}" if first else "",
                             _human(d["head_macs"]) if first else "", _human(d["tail_macs"]) if first else ""])
            if len(d["tensors"]) > 1:
                rows.append(["", "", "(all crossing tensors)", "", f"{d['raw_bytes']:,}", "", "", "", ""])
        fitted, width, hidden = fit_table(title, PARTITION_COLUMNS, rows, wide=wide, box=box.SIMPLE_HEAD)
        Console(width=width).print(fitted)  # --wide: wider than the terminal, on purpose
        note = dropped_note(hidden, width)
        if note:
            Console().print(note)


def _verify(console: object, model: str, weights: str, image: str | None, json_output: bool) -> int:
    """Exit code 0 when every candidate's tail(head(x)) matches the full model within the tolerance."""
    from rich.table import Table

    from splitbed.models import ModelError, load
    from splitbed.models.preprocess import load_image
    from splitbed.models.verify import TOLERANCE, equivalence

    try:
        loaded = load(model, weights)
        if image is None:
            import skimage.data

            prepared = load_image(skimage.data.chelsea(), loaded.spec)
        else:
            prepared = load_image(image, loaded.spec)
        results = equivalence(loaded, prepared.array)
    except ModelError as exc:
        raise CliError(str(exc), "list the models with 'splitbed partitions'; weights: docs/MODELS.md") from None
    if json_output:
        typer.echo(json.dumps({"model": model, "weights": loaded.weights.to_dict(), "tolerance": TOLERANCE,
                               "results": [{"partition_id": r.partition.partition_id, "name": r.partition.name,
                                            "max_abs_diff": r.max_abs_diff, "ok": r.ok} for r in results]},
                              indent=1))
    else:
        table = Table(title=f"{model}: max |tail(head(x)) - full(x)| (weights {loaded.weights.requested} -> "
                            f"{loaded.weights.source})")
        for col in ("id", "partition", "tensors", "max abs diff", "ok"):
            table.add_column(col)
        for r in results:
            table.add_row(str(r.partition.partition_id), r.partition.name, str(r.partition.tensors),
                          "0 (exact)" if r.exact else f"{r.max_abs_diff:.3g}", "yes" if r.ok else "[red]NO[/red]")
        console.print(table)  # type: ignore[attr-defined]
        # random weights: the command line says so once (splitbed.cli_support), as every command does
    return 0 if all(r.ok for r in results) else 1


def _onnx_listing(console: Any, model: str, weights: str | None, json_output: bool) -> int:
    """Every candidate cut of an ONNX file, or (weights given) of a registered model's converted graph."""
    from rich.table import Table

    from splitbed.models import ModelError

    try:
        if weights is not None:
            from splitbed.models import load
            from splitbed.models.onnx.convert import converted

            result = converted(load(model, weights))
            graph = result.graph
            note = (f"{model} converted to ONNX ({'from the cache' if result.cached else 'now'}; conversion "
                    f"{result.conversion_seconds:.1f} s): {result.path}")
        else:
            from splitbed.models.onnx.graph import load as load_graph

            graph = load_graph(model)
            note = ""
        from splitbed.models.onnx.summary import listing

        data = listing(graph)
    except ModelError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    if json_output:
        typer.echo(json.dumps(data, indent=1))
        return 0
    ins = ", ".join(f"{t['name']} {t['dtype']}{t['shape']}" for t in data["inputs"])
    table = Table(title=f"{graph.source}: {len(data['cuts'])} candidate cuts of {data['nodes']} nodes (input {ins}; "
                        "per sample: the first dimension is the batch)")
    for col in ("cut", "node", "op", "keras partition", "branches", "crossing tensor", "dtype shape", "raw bytes"):
        table.add_column(col, justify="right" if col in ("cut", "branches", "raw bytes") else "left",
                         overflow="fold")
    for cut in data["cuts"]:
        keras = ", ".join(f"{k['partition_id']}={k['name']}" for k in cut["keras_partitions"])
        for k, t in enumerate(cut["tensors"]):
            first = k == 0
            size = "?" if t["raw_bytes"] is None else f"{t['raw_bytes']:,}"
            table.add_row(str(cut["cut_id"]) if first else "", cut["node"] if first else "",
                          cut["op_type"] if first else "", keras if first else "",
                          str(cut["branches"]) if first else "", t["name"],
                          f"{t['dtype']} {tuple(t['per_sample_shape'] or ())}", size)
        if cut["branches"] > 1:
            total = "?" if cut["raw_bytes"] is None else f"{cut['raw_bytes']:,}"
            table.add_row("", "", "", "", "", "(all crossing tensors)", "", total)
    console.print(table)
    if note:
        console.print(note)
    return 0
