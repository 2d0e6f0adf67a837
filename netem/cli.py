"""The `netem` command: mahimahi-style shells over an emulated link, the profile list, and the host doctor.

\b
    netem profiles                         the built-in profiles and their figures
    netem shell --profile 5g-embb [--backend auto|kernel|userspace] [--server "iperf3 -s"] -- iperf3 -c '$NETEM_REMOTE'
    netem doctor                           what this host can emulate (netem.doctor)

`netem shell` runs CMD on the ue side with NETEM_REMOTE (the edge address) in its environment, the optional
server on the edge side (started first, stopped after; its output goes to stderr), returns CMD's exit status
and removes everything.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from netem.errors import NetemError
from netem.profile import DirectionProfile, GilbertElliott, LinkProfile, RandomLoss, builtin_profiles

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, rich_markup_mode=None)
err_console = Console(stderr=True)


def _rate(direction: DirectionProfile) -> str:
    if direction.trace is not None:
        return f"trace ({direction.trace.kind})"
    return "unshaped" if direction.rate_mbit is None else f"{direction.rate_mbit:g} Mbit/s"


def _jitter(direction: DirectionProfile) -> str:
    if direction.jitter_ms == 0:
        return "-"
    if direction.jitter_distribution == "uniform":
        return f"±{direction.jitter_ms:g} ms uniform"
    if direction.jitter_distribution == "normal":
        return f"σ {direction.jitter_ms:g} ms normal"
    return f"{direction.jitter_ms:g} ms pareto"


def _loss(direction: DirectionProfile) -> str:
    loss = direction.loss
    if loss is None or loss.mean_loss == 0:
        return "-"
    if isinstance(loss, RandomLoss):
        return f"{loss.p * 100:.3g}%"
    assert isinstance(loss, GilbertElliott)
    return f"GE mean {loss.mean_loss * 100:.3g}%"


def _queue(direction: DirectionProfile) -> str:
    if direction.rate_mbit is None and direction.trace is None:
        return "-"  # no bottleneck, nothing queues
    parts = []
    if direction.queue_packets is not None or direction.queue_bytes is None:
        parts.append(f"{direction.effective_queue_packets} pkts")
    if direction.queue_bytes is not None:
        parts.append(f"{direction.queue_bytes} B")
    return " / ".join(parts) + f" {direction.queue_discipline}"


def profile_rows(profiles: list[LinkProfile]) -> list[dict[str, str]]:
    """The figures `netem profiles` shows, one dict per profile (also used by docs/tests)."""
    rows = []
    for profile in profiles:
        up, down = profile.uplink, profile.downlink
        rows.append({
            "name": profile.name,
            "ul_rate": _rate(up), "ul_delay": f"{up.delay_ms:g} ms", "ul_jitter": _jitter(up), "ul_loss": _loss(up),
            "ul_queue": _queue(up),
            "dl_rate": _rate(down), "dl_delay": f"{down.delay_ms:g} ms",
            "trace": Path(up.trace.path).name if up.trace else (Path(down.trace.path).name if down.trace else "-"),
            "source": profile.source,
        })
    return rows


def profiles_markdown(profiles: list[LinkProfile]) -> str:
    """The profile table of docs/PROFILES.md (a test keeps the document equal to this)."""
    lines = ["| name | UL rate | UL delay | UL jitter | UL loss | UL queue | DL rate | DL delay | trace |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in profile_rows(profiles):
        lines.append(f"| `{row['name']}` | {row['ul_rate']} | {row['ul_delay']} | {row['ul_jitter']} | "
                     f"{row['ul_loss']} | {row['ul_queue']} | {row['dl_rate']} | {row['dl_delay']} | {row['trace']} |")
    lines.append("")
    for profile in profiles:
        lines.append(f"- **`{profile.name}`**: {profile.description} Source: {profile.source}")
    return "\n".join(lines) + "\n"


@app.command("profiles")
def profiles_command(
    as_json: Annotated[bool, typer.Option("--json", help="print the profiles as JSON (LinkProfile.to_dict)")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print the docs/PROFILES.md table")] = False,
) -> None:
    """List the built-in link profiles with their figures and sources."""
    profiles = builtin_profiles()
    if as_json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    if markdown:
        print(profiles_markdown(profiles), end="")
        return
    table = Table(title="netem built-in profiles (uplink = ue -> edge)", show_lines=True)
    for column in ("name", "UL rate", "UL delay", "UL jitter", "UL loss", "UL queue", "DL rate", "DL delay", "trace",
                   "source"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for row in profile_rows(profiles):
        source = row["source"] if len(row["source"]) <= 160 else row["source"][:157] + "..."
        table.add_row(row["name"], row["ul_rate"], row["ul_delay"], row["ul_jitter"], row["ul_loss"],
                      row["ul_queue"], row["dl_rate"], row["dl_delay"], row["trace"], source)
    Console(width=max(160, Console().width)).print(table)


@app.command(
    "shell",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def shell_command(
    ctx: typer.Context,
    profile: Annotated[str, typer.Option("--profile", "-p", help="built-in profile name or a .toml path")],
    backend: Annotated[str, typer.Option(help="auto | kernel | userspace")] = "auto",
    server: Annotated[str | None, typer.Option(help="command to run on the edge side (split like a shell)")] = None,
    server_wait: Annotated[float, typer.Option(help="seconds to let the server start before CMD")] = 0.5,
    capture: Annotated[Path | None, typer.Option(help="write a pcap of the ue side here")] = None,
    report: Annotated[Path | None, typer.Option(help="write topology description + link counters (JSON) here")] = None,
) -> None:
    """Run CMD (after --) on the ue side of an emulated link; its exit status becomes ours."""
    command = list(ctx.args)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        command = [os.environ.get("SHELL", "/bin/sh")]
    try:
        status = run_shell(profile, backend, command, server=server, server_wait=server_wait, capture=capture,
                           report=report)
    except NetemError as exc:
        err_console.print(f"[red]netem shell:[/red] {exc}")
        raise typer.Exit(code=2) from None
    raise typer.Exit(code=status)


def run_shell(
    profile_name: str,
    backend: str,
    command: list[str],
    *,
    server: str | None = None,
    server_wait: float = 0.5,
    capture: Path | None = None,
    report: Path | None = None,
) -> int:
    """Build the topology, run server (edge) and command (ue), tear down; returns the command's exit status."""
    from netem.capture import Capture
    from netem.topology import Topology

    profile = LinkProfile.load(profile_name)
    with Topology(profile, backend=backend) as topo:
        env = dict(os.environ, NETEM_REMOTE=topo.edge_addr, NETEM_LOCAL=topo.ue_addr, NETEM_PROFILE=profile.name,
                   NETEM_BACKEND=str(topo.backend), NETEM_NS_UE=topo.ns_ue, NETEM_NS_EDGE=topo.ns_edge)
        server_env = dict(env, NETEM_REMOTE=topo.ue_addr, NETEM_LOCAL=topo.edge_addr)
        err_console.print(f"netem: {profile.name} on the {topo.backend} backend; ue {topo.ue_addr} "
                          f"({topo.ns_ue}), edge {topo.edge_addr} ({topo.ns_edge})")
        cap = Capture(topo, "ue", path=capture) if capture is not None else None
        if cap is not None:
            cap.start()
        server_process = None
        try:
            if server:
                # The server's output goes to our stderr, so CMD's stdout stays clean for pipes and JSON.
                server_process = topo.popen("edge", shlex.split(server), env=server_env, stdin=subprocess.DEVNULL,
                                            stdout=sys.stderr.fileno())
                time.sleep(server_wait)
                if server_process.poll() is not None:
                    raise NetemError(f"server command exited at once with status {server_process.returncode}")
            status = _run_foreground(topo.popen("ue", command, env=env))
        finally:
            if server_process is not None and server_process.poll() is None:
                server_process.terminate()
                try:
                    server_process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    server_process.kill()
            if cap is not None:
                cap.stop()
        if report is not None:
            document: dict[str, Any] = {"topology": topo.describe(), "stats": topo.stats(), "exit_status": status}
            if cap is not None:
                document["capture"] = {"summary": cap.summary, "flows": [f.to_dict() for f in cap.flows]}
            report.write_text(json.dumps(document, indent=2))
    return status


def _run_foreground(process: subprocess.Popen[Any]) -> int:
    """Wait for the ue command; Ctrl-C reaches it through the terminal, so we keep waiting for its status."""
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            continue
    return 128 - code if code < 0 else code  # killed by signal N -> 128 + N, as shells report it


@app.command("doctor", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def doctor_command(ctx: typer.Context) -> None:
    """What this host can emulate (root, namespaces, sch_netem, tbf, offloads, capture...)."""
    from netem import doctor

    raise typer.Exit(code=int(doctor.main(list(ctx.args)) or 0))


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    app(prog_name="netem")


if __name__ == "__main__":
    main()
