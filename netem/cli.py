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
from netem.pyexec import safe_env

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


def tcp_markdown(profiles: list[LinkProfile], measured: dict[str, Any]) -> str:
    """The "What TCP gets" table of docs/PROFILES.md: each profile's TCP claim and why, and the stored
    measurement (netem/data/tcp_goodput.json, written by `netem tcp-check --write`); a test keeps the document
    equal to this."""
    from netem.tcpcheck import TOLERANCE

    lines = ["| profile | direction | link rate (frames) | TCP should reach | measured TCP goodput | of the claim |",
             "|---|---|---|---|---|---|"]
    notes = []
    for profile in profiles:
        claim = profile.expected_tcp
        if claim is None:
            continue
        notes.append(f"- **`{profile.name}`**: {claim.basis}")
        for which in ("uplink", "downlink"):
            expected = claim.direction(which)
            figures = measured.get("measured", {}).get(profile.name, {}).get(which)
            traced = profile.direction(which).trace is not None
            if expected is None and traced and isinstance(figures, dict) and "expected_mbit" in figures:
                expected = float(figures["expected_mbit"])
                lines.append(f"| `{profile.name}` | {which} | {_rate(profile.direction(which))}, "
                             f"{figures.get('stretch')} | {expected:g} Mbit/s (that x 1448/1514) | "
                             f"{_measured_cell(figures)} | {100 * float(figures['goodput_mbit']) / expected:.1f} % |")
                continue
            if expected is None:
                continue
            if isinstance(figures, dict):
                got = _measured_cell(figures)
                ratio = f"{100 * float(figures['goodput_mbit']) / expected:.1f} %"
            else:
                got, ratio = "not measured", "-"
            lines.append(f"| `{profile.name}` | {which} | {_rate(profile.direction(which))} | {expected:g} Mbit/s | "
                         f"{got} | {ratio} |")
    lines.append("")
    lines.append(f"A claim holds when the measured goodput is within {TOLERANCE:.0%} of it. Why each figure:")
    lines.append("")
    lines += notes
    return "\n".join(lines) + "\n"


def _measured_cell(figures: dict[str, Any]) -> str:
    stolen = figures.get("host_cpu_stolen_pct")
    steal = "" if stolen is None else f", {stolen:g} % CPU stolen"
    return f"{float(figures['goodput_mbit']):g} Mbit/s ({figures.get('date')}, {figures.get('backend')} link{steal})"


@app.command("profiles")
def profiles_command(
    as_json: Annotated[bool, typer.Option("--json", help="print the profiles as JSON (LinkProfile.to_dict)")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print the docs/PROFILES.md table")] = False,
    tcp_table: Annotated[bool, typer.Option("--tcp-markdown", help="print the docs/PROFILES.md TCP table")] = False,
) -> None:
    """List the built-in link profiles with their figures and sources."""
    profiles = builtin_profiles()
    if tcp_table:
        from netem.tcpcheck import read_measured

        print(tcp_markdown(profiles, read_measured()), end="")
        return
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


@app.command("tcp-check")
def tcp_check_command(
    profile: Annotated[list[str] | None, typer.Option("--profile", "-p", help="profile (repeatable; default: every "
                                                       "built-in with a TCP claim)")] = None,
    backend: Annotated[str, typer.Option(help="auto | kernel | userspace")] = "auto",
    write: Annotated[bool, typer.Option("--write", help="store the figures for docs/PROFILES.md "
                                        "(netem/data/tcp_goodput.json)")] = False,
) -> None:
    """Measure what one TCP flow gets through each profile (iperf3) against what the profile claims. Needs root
    and iperf3; exit status 1 when a claim misses by more than the tolerance."""
    import datetime

    from netem.tcpcheck import check_profile, expected_of, within_claim, write_measured

    try:
        profiles = [LinkProfile.load(name) for name in profile] if profile else builtin_profiles()
    except NetemError as exc:
        err_console.print(f"error: {exc}")
        raise typer.Exit(2) from None
    results, missed = [], 0
    for link in profiles:
        if link.expected_tcp is None:
            print(f"{link.name}: states no TCP figure ([expected_tcp] missing); skipped")
            continue
        try:
            measured = check_profile(link, backend=backend)
        except NetemError as exc:
            err_console.print(f"error: {link.name}: {exc}")
            raise typer.Exit(1) from None
        for result in measured:
            claim = expected_of(link, result)
            assert claim is not None
            ok = within_claim(result.goodput_mbit, claim)
            missed += not ok
            print(f"{result.describe()}; claim {claim:g} Mbit/s: {100 * result.goodput_mbit / claim:.1f} % "
                  f"{'ok' if ok else 'MISSED'}")
        results += measured
    if write and results:
        write_measured(results, datetime.date.today().isoformat())
    raise typer.Exit(1 if missed else 0)


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
    with Topology(profile, backend=backend, guard=True) as topo:  # kill -9 of the shell: nothing survives
        # PYTHONSAFEPATH: a `python -m ...` among the commands never imports from the working directory.
        env = dict(safe_env(), NETEM_REMOTE=topo.edge_addr, NETEM_LOCAL=topo.ue_addr, NETEM_PROFILE=profile.name,
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
