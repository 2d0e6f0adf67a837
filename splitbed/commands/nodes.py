"""`splitbed remote-node` and `splitbed local-node`: the two inference nodes, run by hand on two hosts or in the
testbed's namespaces (the testbed starts them as `python -m splitbed remote-node ...` / `local-node ...`)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from netem.cliapp import CliError, check_writable
from splitbed.devices import DEFAULT_UE
from splitbed.nodes.protocol import DEFAULT_MAX_UNIT_BYTES, DEFAULT_RESULT_MODE

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _logging(level: str) -> None:
    from splitbed.cli_support import log_level
    from splitbed.nodes.logsafe import SafeFormatter

    chosen = log_level(level)  # a typo is refused (it would silently log at the default)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))  # peers' text in a message never starts a line of its own
    logging.basicConfig(level=chosen, handlers=[handler])


def _secret(path: Path | None) -> bytes | None:
    """The shared secret from --secret-file or $SPLITBED_SECRET (never from the command line itself)."""
    from splitbed.nodes.auth import load_secret
    from splitbed.nodes.errors import ConfigurationError

    try:
        return load_secret(path)
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--secret-file") from None


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _json_object(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{what} must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{what} must be a JSON object")
    return value


def _check_transport(transport: str, congestion: str) -> None:
    from splitbed.nodes.quic import CONGESTION_CONTROLLERS, TRANSPORTS

    if transport not in TRANSPORTS:
        raise CliError(f"--transport {transport!r} is not a transport", f"use one of {', '.join(TRANSPORTS)}")
    if congestion not in CONGESTION_CONTROLLERS:
        raise CliError(f"--quic-congestion {congestion!r} is not one aioquic has",
                       f"use one of {', '.join(CONGESTION_CONTROLLERS)}")


def remote_node(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(5599, help="TCP port (0: any free port, announced on stdout)"),
    models: Annotated[list[str] | None, typer.Option("--model", "-m", help="model to offer (repeatable; default "
                                                     "mobilenet_v2)")] = None,
    weights: str = typer.Option("auto", help="auto, imagenet, random:SEED or a weights file (same as the local node)"),
    engine: str = typer.Option("tensorflow", help="inference runtime of registered models: tensorflow or onnxruntime (converted at first use, cached); .onnx models always run on onnxruntime"),
    max_unit_bytes: int = typer.Option(DEFAULT_MAX_UNIT_BYTES, help="largest unit accepted"),
    read_timeout: float = typer.Option(30.0, help="seconds without progress inside a unit"),
    idle_timeout: float = typer.Option(600.0, help="seconds without any unit before the session is closed"),
    unit_timeout_base: float = typer.Option(30.0, help="a unit may take base seconds ..."),
    unit_min_rate: float = typer.Option(65536.0, help="... plus its bytes received so far at this many B/s"),
    config_timeout: float = typer.Option(30.0, help="seconds for the whole configuration stage"),
    max_sessions: int = typer.Option(16, help="sessions served at once"),
    evict_after: float = typer.Option(10.0, help="when full, a session idle (or behind the minimum rate) this many "
                                      "seconds is evicted to admit a new one"),
    shutdown_grace: float = typer.Option(10.0, help="seconds in-flight inferences get after SIGTERM"),
    warm: bool = typer.Option(False, help="build every partition's tail at start"),
    device: str = typer.Option("host", help="edge device profile the tail emulates (`splitbed devices`; host = "
                               "none) or a TOML path"),
    memory_budget_mib: int = typer.Option(1024, min=1, help="memory all sessions' units may hold at once "
                                          "(buffers and decoding); a unit that does not fit is refused"),
    max_batch: int = typer.Option(1, min=1, help="samples a data unit's tensors may hold (the tail's memory grows "
                                  "with it)"),
    secret_file: Annotated[Path | None, typer.Option(help="serve only peers holding this file's shared secret "
                                                     "(chmod 600; or set $SPLITBED_SECRET)")] = None,
    transport: str = typer.Option("tcp", help="tcp, or quic (one QUIC stream per session; a certificate made for "
                                  "this run, its PEM in the ready line)"),
    quic_congestion: str = typer.Option("reno", help="QUIC congestion controller: reno or cubic"),
    log_level: str = typer.Option("info", help="debug, info, warning"),
) -> None:
    """Run the remote inference node (edge server) until SIGTERM. Prints one JSON `ready` line on stdout."""
    _logging(log_level)
    from splitbed.models import spec_for
    from splitbed.models.weights import check_spec
    from splitbed.nodes.errors import NodeError
    from splitbed.nodes.remote import RemoteConfig, run_remote

    for name in models or []:
        spec_for(name)  # an unknown name or a bad .onnx file is refused before the port is bound
    check_spec(weights)
    _check_device(device, "edge")
    secret = _secret(secret_file)
    _check_transport(transport, quic_congestion)

    config = RemoteConfig(host=host, port=port, models=tuple(models or ["mobilenet_v2"]), weights=weights, engine=engine, max_unit_bytes=max_unit_bytes,
                          read_timeout_s=read_timeout, idle_timeout_s=idle_timeout,
                          unit_timeout_base_s=unit_timeout_base, unit_min_rate_bps=unit_min_rate,
                          config_timeout_s=config_timeout, max_sessions=max_sessions, evict_after_s=evict_after,
                          shutdown_grace_s=shutdown_grace, warm=warm,
                          memory_budget_bytes=memory_budget_mib << 20, secret=secret, max_batch=max_batch,
                          device=device, transport=transport, quic_congestion=quic_congestion)
    try:
        code = run_remote(config)
    except (NodeError, OSError) as exc:
        raise CliError(str(exc), "check --host/--port (0: any free port) and --model; see 'splitbed "
                       "remote-node --help'") from None
    raise typer.Exit(code)


def local_node(
    connect: str = typer.Option(..., help="remote node address HOST:PORT"),
    model: str = typer.Option("mobilenet_v2", help="model (registered name, or an .onnx file)"),
    partition: str = typer.Option("0", help="partition name or id"),
    image: str = typer.Option("builtin:chelsea", help="image file, or builtin:NAME (chelsea, astronaut, ...)"),
    encoding: str = typer.Option("tlv", help="tlv or json-baseline"),
    compression: str = typer.Option("none", help="compression profile name or id (tlv only)"),
    repetitions: int = typer.Option(1, help="inferences to run"),
    weights: str = typer.Option("auto", help="auto, imagenet, random:SEED or a weights file (same as the remote)"),
    engine: str = typer.Option("tensorflow", help="inference runtime of registered models: tensorflow or onnxruntime (converted at first use, cached); .onnx models always run on onnxruntime"),
    result_mode: str = typer.Option(DEFAULT_RESULT_MODE, help="topk (the best --top-k scores) or full (all 1000 "
                                    "scores as JSON, as the testbed contribution's downlink)"),
    top_k: int = typer.Option(5, help="predictions to decode"),
    aips: str = typer.Option("auto", help="auto, resend-same-id, resend-new-id, omit"),
    link_info: str | None = typer.Option(None, help='JSON recorded as the link, e.g. {"profile":"5g-embb"}'),
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE recorded in every record's tags (repeatable)")] = None,
    jobs: str | None = typer.Option(None, help="driven mode: read JSON-line jobs from this file ('-' = stdin)"),
    preload: Annotated[list[str] | None, typer.Option(help="load this model before reading jobs (repeatable), "
                                                       "e.g. while the remote node is still starting")] = None,
    output: Annotated[Path | None, typer.Option(help="append records here instead of stdout")] = None,
    result_timeout: float = typer.Option(120.0, help="seconds to wait for each result"),
    connect_retry: float = typer.Option(0.0, help="seconds to keep retrying a refused connection"),
    clock_pings: int = typer.Option(8, help="ping-pongs for the clock offset estimate"),
    allow_weights_mismatch: bool = typer.Option(False, help="run even if the remote's weights differ"),
    verify_delivery: bool = typer.Option(False, help="compare CRC-32s of sent and decoded tensors (after timing)"),
    device: str = typer.Option(DEFAULT_UE, help="UE device profile the head emulates (`splitbed devices`; host = "
                               "none) or a TOML path"),
    secret_file: Annotated[Path | None, typer.Option(help="prove this file's shared secret to the remote node and "
                                                     "require its proof (chmod 600; or set $SPLITBED_SECRET)")] = None,
    transport: str = typer.Option("tcp", help="tcp or quic (the remote node must use the same)"),
    quic_ca: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, readable=True, help="with --transport quic: the remote's certificate (PEM, "
                                                 "from its ready line); the only one trusted")] = None,
    quic_congestion: str = typer.Option("reno", help="QUIC congestion controller: reno or cubic"),
    log_level: str = typer.Option("warning", help="debug, info, warning"),
) -> None:
    """Run the local inference node (UE): one job from the options, or JSON-line jobs (--jobs); writes one JSON
    metrics record per inference (docs/METRICS.md)."""
    _logging(log_level)
    from splitbed.nodes.errors import NodeError
    from splitbed.nodes.jobs import Job
    from splitbed.nodes.local import LocalConfig, LocalNode, run_jobs

    host, port = parse_address(connect)
    from splitbed.models import spec_for
    from splitbed.models.weights import check_spec
    from splitbed.nodes.images import check_image

    check_spec(weights)
    if jobs is None:  # one job from the options: refuse a bad one before connecting
        spec_for(model).partition(int(partition) if partition.isdigit() else partition)
        check_image(image)
        if encoding == "tlv":
            from splitbed.format.errors import FormatError
            from splitbed.format.profiles import get_profile

            try:
                get_profile(int(compression) if compression.isdigit() else compression)
            except FormatError as exc:
                raise CliError(str(exc), "list the compression profiles with 'splitbed format profiles'") from None
        Job(model=model, partition=partition, image=image, encoding=encoding, compression=compression,
            repetitions=repetitions, aips=aips, result_mode=result_mode, top_k=top_k)
    for name in preload or []:
        spec_for(name)
    _check_device(device, "ue")
    _check_transport(transport, quic_congestion)
    ca_pem = None
    if transport == "quic":
        if quic_ca is None:
            raise CliError("--transport quic needs the remote's certificate",
                           "save the quic_cert_pem of the remote node's ready line to a file and pass --quic-ca FILE")
        from splitbed.nodes.quic import read_ca_file

        try:
            ca_pem = read_ca_file(str(quic_ca))
        except (OSError, ValueError) as exc:
            raise CliError(f"--quic-ca {quic_ca}: {exc}", "give the PEM file of the remote's certificate") from None
    if jobs is not None and jobs != "-" and not Path(jobs).is_file():
        raise CliError(f"--jobs {jobs}: no such file", "give a file of JSON-line jobs, or '-' for stdin")
    if output is not None:
        check_writable(output, "--output")
    link = _json_object(link_info, "--link-info")
    tags: dict[str, Any] = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--tag takes KEY=VALUE, got {item!r}")
        tags[key] = value
    config = LocalConfig(host=host, port=port, weights=weights, engine=engine, link=link, result_timeout_s=result_timeout,
                         connect_retry_s=connect_retry,
                         clock_pings=clock_pings, allow_weights_mismatch=allow_weights_mismatch,
                         verify_delivery=verify_delivery, secret=_secret(secret_file), device=device,
                         transport=transport, quic_ca_pem=ca_pem, quic_congestion=quic_congestion)
    out = output.open("a") if output is not None else sys.stdout
    try:
        with LocalNode(config) as node:
            for name in preload or []:
                node.runner.load(name)
            if jobs is not None:
                if jobs == "-":
                    failed = run_jobs(node, sys.stdin, out)
                else:
                    with Path(jobs).open() as lines:
                        failed = run_jobs(node, lines, out)
                raise typer.Exit(1 if failed else 0)
            job = Job(model=model, partition=int(partition) if partition.isdigit() else partition, image=image,
                      encoding=encoding, compression=compression, repetitions=repetitions, tags=tags, aips=aips,
                      result_mode=result_mode, top_k=top_k, link=link)
            failed = run_jobs(node, [json.dumps(job.__dict__)], out, on_record=_summary)
            raise typer.Exit(1 if failed else 0)
    except NodeError as exc:
        raise CliError(str(exc), "check that the remote node runs at --connect and that both nodes use the same "
                       "--weights; see 'splitbed local-node --help'") from None
    finally:
        if output is not None:
            out.close()


def _check_device(name: str, side: str) -> None:
    """A device profile that does not exist or does not fit this node's side is refused before anything starts."""
    from splitbed.devices import DeviceError
    from splitbed.devices import load as load_device

    try:
        load_device(name).check_role(side)
    except DeviceError as exc:
        raise CliError(str(exc), "device profiles: 'splitbed devices' (docs/DEVICES.md)") from None


def _summary(record: dict[str, Any]) -> None:
    """One human line per inference on stderr (stdout carries the JSON records)."""
    if record.get("record_type") != "inference":
        return
    if record["status"] != "ok":
        typer.echo(f"inference failed: {record['error']}", err=True)
        return
    top = record["predictions"][0] if record["predictions"] else {}
    typer.echo(f"{record['model']} @ {record['partition_name']} ({record['encoding']}, "
               f"{record['compression_profile']}): uplink {record['uplink_bytes']:,} B, "
               f"local {record['local_inference_ms']:.1f} ms, delivery {record['delivery_ms']:.2f} ms, "
               f"remote {record['remote_inference_ms']:.1f} ms, e2e {record['e2e_latency_ms']:.1f} ms; "
               f"top-1 {top.get('label')} ({top.get('score', 0):.3f})", err=True)


def register(app: typer.Typer) -> None:
    app.command("remote-node")(remote_node)
    app.command("local-node")(local_node)
