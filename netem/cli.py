"""Emulated links, as mahimahi's shells make them: run a command over a link with the rate, delay and loss
of a profile (or your own), log every packet and draw it, list the profiles, check this host.

`netem shell` runs CMD on the ue side with NETEM_REMOTE (the edge address) in its environment, the optional
--server on the edge side (started first, stopped after; its output goes to stderr), returns CMD's exit status
and removes everything. CMD gets no shell: use sh -c '...' for $NETEM_REMOTE.

\b
Examples:
  netem profiles
  netem shell -p 5g-embb -- sh -c 'ping -c 3 "$NETEM_REMOTE"'
  netem shell --rate 20 --delay 10 --loss 0.1% -- ping -c 3 198.18.0.2
  netem shell -p lte --server 'iperf3 -s' -- sh -c 'iperf3 -c $NETEM_REMOTE'
  netem shell --rate 20 --log link.log -- ping -c 20 -i 0.05 198.18.0.2
  netem graph link.log -o link.png
  netem doctor
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console

from netem.cliapp import CliError, Column, ErrorPolicy, check_writable, dropped_note, fit_table, make_app, run
from netem.errors import NetemError, ProfileError
from netem.linkgraph import LinkLogError
from netem.profile import DirectionProfile, GilbertElliott, LinkProfile, RandomLoss, builtin_profiles
from netem.pyexec import safe_env
from netem.quicklink import QuickLinkError, quick_profile

USAGE_ERRORS: dict[type[BaseException], str] = {
    LinkLogError: "give a file written by 'netem shell --log FILE'",
    QuickLinkError: "see 'netem shell --help' for the units (--rate 20 or 500kbit, --delay 10 or 0.5s, --loss 0.1%)",
    ProfileError: "list the built-in profiles with 'netem profiles'; a profile file's keys are in docs/PROFILES.md",
}
app = make_app(__doc__, name="netem", policy=ErrorPolicy(USAGE_ERRORS, failures=(NetemError,)))


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


PROFILE_KEYS = ("name", "ul_rate", "ul_delay", "ul_jitter", "ul_loss", "ul_queue", "dl_rate", "dl_delay", "trace",
                "source")
PROFILE_COLUMNS = (Column("name"), Column("UL rate"), Column("UL delay"), Column("UL jitter", drop=4), Column("UL loss"),
                   Column("UL queue", drop=3), Column("DL rate", drop=5), Column("DL delay", drop=6),
                   Column("trace", drop=2), Column("source", wrap=True, drop=1))


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
    wide: Annotated[bool, typer.Option("--wide", help="every column (and the full sources), however wide")] = False,
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
    rows = [[row[key] for key in PROFILE_KEYS] for row in profile_rows(profiles)]
    for row in rows:  # the trace column names the file and kind
        row[1] = "trace" if row[1].startswith("trace") else row[1]
    table, width, hidden = fit_table("netem built-in profiles (uplink = ue -> edge)", PROFILE_COLUMNS, rows,
                                     wide=wide, box=box.SIMPLE_HEAD, show_lines=wide)
    console = Console(width=width)  # --wide: wider than the terminal, on purpose
    console.print(table)
    note = dropped_note(hidden, width)
    if note:
        console.print(f"{note} The sources are in docs/PROFILES.md.")


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

    if backend not in BACKENDS:
        raise CliError(f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    profiles = [LinkProfile.load(name) for name in profile] if profile else builtin_profiles()  # bad name: exit 2
    results, missed = [], 0
    for link in profiles:
        if link.expected_tcp is None:
            print(f"{link.name}: states no TCP figure ([expected_tcp] missing); skipped")
            continue
        try:
            measured = check_profile(link, backend=backend)
        except NetemError as exc:
            raise CliError(f"{link.name}: {exc}", "see 'netem doctor' for what this host can emulate",
                           status=1) from None
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


@app.command("shell", context_settings={"allow_interspersed_args": False})
def shell_command(
    command: Annotated[list[str] | None, typer.Argument(
        help="the command to run on the ue side (after --; default: $SHELL)", show_default=False)] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", "-p", help="built-in profile name or a .toml path (the options below override its fields)")] = None,
    rate: Annotated[str | None, typer.Option(help="link rate, Mbit/s (20) or with a unit (500kbit, 1gbit)")] = None,
    delay: Annotated[str | None, typer.Option(help="one-way delay, ms (10) or with a unit (0.5s)")] = None,
    loss: Annotated[str | None, typer.Option(help="random loss, a percentage (0.1%) or a fraction (0.001)")] = None,
    uplink_only: Annotated[bool, typer.Option(
        "--uplink-only", help="apply --rate/--delay/--loss to the uplink (ue -> edge) only")] = False,
    backend: Annotated[str, typer.Option(help="auto | kernel | userspace")] = "auto",
    server: Annotated[str | None, typer.Option(help="command to run on the edge side (split like a shell)")] = None,
    server_wait: Annotated[float, typer.Option(help="seconds to let the server start before CMD")] = 0.5,
    capture: Annotated[Path | None, typer.Option(help="write a pcap of the ue side here")] = None,
    report: Annotated[Path | None, typer.Option(help="write topology description + link counters (JSON) here")] = None,
    log: Annotated[Path | None, typer.Option(
        help="write a per-packet log of the link here (userspace link; draw it with 'netem graph')")] = None,
) -> None:
    """Run CMD (after --) on the ue side of an emulated link; its exit status becomes ours.

    The link is a --profile, quick options (--rate, --delay, --loss, as mahimahi's mm-link, mm-delay and
    mm-loss), or a profile with some of its fields overridden by them.

    \b
    Examples:
      netem shell --rate 20 --delay 10 --loss 0.1% -- ping -c 3 198.18.0.2
      netem shell -p lte --rate 20 --uplink-only -- ping -c 3 198.18.0.2
      netem shell --rate 20 --log link.log -- ping -c 20 -i 0.05 198.18.0.2
    """
    argv = list(command or []) or [os.environ.get("SHELL", "/bin/sh")]
    refuse_nesting()
    if backend not in BACKENDS:
        raise typer.BadParameter(f"{backend!r} is not one of {', '.join(BACKENDS)}", param_hint="'--backend'")
    check_program(argv[0], "the command")
    if server:
        check_program(shlex.split(server)[0] if shlex.split(server) else "", "--server")
    if log is not None:
        if backend == "kernel":
            raise CliError("--log needs the userspace link (the kernel's qdiscs log no packets)",
                           "use --backend userspace (or auto)")
        backend = "userspace"
    for option, path in (("--capture", capture), ("--report", report), ("--log", log)):
        if path is not None:
            check_writable(path, option)
    if profile is None and rate is None and delay is None and loss is None:
        raise CliError("no link given", "name a --profile (see 'netem profiles') or give --rate, --delay and/or "
                       "--loss, e.g. netem shell --rate 20 --delay 10 -- CMD")
    link = quick_profile(LinkProfile.load(profile) if profile is not None else None, rate=rate, delay=delay,
                         loss=loss, uplink_only=uplink_only)
    status = run_shell(link, backend, argv, server=server, server_wait=server_wait, capture=capture,
                       report=report, log=log)
    raise typer.Exit(code=status)


BACKENDS = ("auto", "kernel", "userspace")


def refuse_nesting() -> None:
    """A netem shell inside another's ue namespace would build a second, separate link (namespaces do not nest
    here), so its traffic would not cross the outer link: say so, and how to compose instead."""
    outer = os.environ.get("NETEM_NS_UE")
    if not outer:
        return
    try:
        inside = os.stat("/proc/self/ns/net").st_ino == os.stat(f"/run/netns/{outer}").st_ino
    except OSError:
        return
    if inside:
        raise CliError(f"already inside a netem shell (ue namespace {outer}); a nested shell would build a "
                       "second link that its traffic never crosses",
                       "compose in one shell instead: netem shell -p PROFILE --rate R --delay D --loss L -- CMD "
                       "(the options override the profile's fields)")


def check_program(program: str, what: str) -> None:
    """Refuse, before any link is built, a command that cannot be started (as a shell would say 'not found')."""
    if not program:
        raise CliError(f"{what} is empty", "give a program to run, e.g. -- sh -c 'ping -c 3 $NETEM_REMOTE'")
    if "/" in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise CliError(f"{what}: {program} is not an executable file", "check the path (ls -l)")
        return
    if shutil.which(program) is None:
        raise CliError(f"command not found: {program}" if what == "the command" else f"{what}: command not found: "
                       f"{program}",
                       "install it or check the spelling; options of netem shell go before '--', the command after")


def run_shell(
    profile_name: str | LinkProfile,
    backend: str,
    command: list[str],
    *,
    server: str | None = None,
    server_wait: float = 0.5,
    capture: Path | None = None,
    report: Path | None = None,
    log: Path | None = None,
) -> int:
    """Build the topology, run server (edge) and command (ue), tear down; returns the command's exit status."""
    from netem.capture import Capture
    from netem.topology import Topology

    profile = profile_name if isinstance(profile_name, LinkProfile) else LinkProfile.load(profile_name)
    options = None
    if log is not None:
        from netem.link.options import ForwarderOptions

        options = ForwarderOptions(log_path=str(log.expanduser().resolve()))
    # guard: kill -9 of the shell leaves nothing behind
    with Topology(profile, backend=backend, link_options=options, guard=True) as topo:
        # PYTHONSAFEPATH: a `python -m ...` among the commands never imports from the working directory.
        env = dict(safe_env(), NETEM_REMOTE=topo.edge_addr, NETEM_LOCAL=topo.ue_addr, NETEM_PROFILE=profile.name,
                   NETEM_BACKEND=str(topo.backend), NETEM_NS_UE=topo.ns_ue, NETEM_NS_EDGE=topo.ns_edge)
        server_env = dict(env, NETEM_REMOTE=topo.ue_addr, NETEM_LOCAL=topo.edge_addr)
        print(f"netem: {profile.name} on the {topo.backend} backend; ue {topo.ue_addr} ({topo.ns_ue}), edge "
              f"{topo.edge_addr} ({topo.ns_edge})", file=sys.stderr, flush=True)
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


@app.command("graph")
def graph_command(
    log: Annotated[Path, typer.Argument(help="a per-packet link log (netem shell --log FILE)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="the PNG to write (default: LOG.png)")] = None,
    direction: Annotated[str, typer.Option(help="uplink (ue -> edge) or downlink")] = "uplink",
    window_ms: Annotated[float, typer.Option(help="throughput averaging window, ms")] = 100.0,
) -> None:
    """Draw a link log as mm-throughput-graph and mm-delay-graph do: capacity, offered and delivered Mbit/s
    per window, and every packet's delay through the link."""
    from netem.linkgraph import draw

    target = out if out is not None else log.with_suffix(log.suffix + ".png")
    check_writable(target, "--out")
    if direction not in ("uplink", "downlink"):
        raise CliError(f"unknown direction {direction!r}", "use uplink or downlink")
    print(draw(log, target, direction=direction, window_ms=window_ms))


@app.command("doctor")
def doctor_command(
    as_json: Annotated[bool, typer.Option("--json", help="print the probes as JSON")] = False,
    no_userns: Annotated[bool, typer.Option(
        "--no-userns", help="when not root, probe as this user instead of inside a user namespace")] = False,
) -> None:
    """What this host can emulate (root, namespaces, sch_netem, tbf, offloads, capture...); exit 1 when a
    must-have is missing."""
    from netem import doctor

    argv = [*(["--json"] if as_json else []), *(["--no-userns"] if no_userns else [])]
    raise typer.Exit(code=int(doctor.main(argv) or 0))


def main(argv: list[str] | None = None) -> int:
    """`netem` (argv None: the process's own arguments): returns the exit status (2: bad input, with one line
    saying what and the fix; 1: the emulation failed)."""
    if argv is None:  # the program itself: `netem ... | head` ends quietly, as other tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return run(app, "netem", argv)


if __name__ == "__main__":
    sys.exit(main())
