"""The doctor's output: the probe table with what each result means and the fixes, or JSON; and its exit code."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from netem.doctor.probes import Probe, exit_code, missing_must_haves


def render(probes: Sequence[Probe], title: str = "netem doctor", console: object | None = None) -> None:
    """Print the probe table and, below it, the fix for everything missing (must-haves first)."""
    from rich.console import Console
    from rich.table import Table

    out = console if isinstance(console, Console) else Console()
    table = Table(title=title, show_lines=False)
    table.add_column("probe", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("what this means")
    for p in probes:
        if p.ok:
            result = "[green]yes[/]"
        elif p.must_have:
            result = "[bold red]MISSING[/]"
        else:
            result = "[yellow]no[/]"
        table.add_row(p.name + (" *" if p.must_have else ""), result, p.detail, p.meaning)
    out.print(table)
    out.print("* must-have: the testbed cannot give correct numbers without it")
    missing = missing_must_haves(probes)
    for label, group in (("[bold red]missing must-have[/]", missing),
                         ("optional", [p for p in probes if not p.ok and not p.must_have])):
        by_fix: dict[str, list[str]] = {}
        for p in group:
            if p.fix:
                by_fix.setdefault(p.fix, []).append(p.name)
        for fix, names in by_fix.items():
            out.print(f"{label} {', '.join(names)}: fix: {fix}", soft_wrap=True)
    if not missing:
        out.print("[green]all must-haves present[/]")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="What this machine can do for the testbed.")
    parser.add_argument("--json", action="store_true", help="print the probes as JSON")
    parser.add_argument("--no-userns", action="store_true",
                        help="when not root, probe as this user instead of inside a user namespace")
    parser.add_argument("--inside", nargs=4, metavar=("NETNS", "CHECK", "VETH_A", "VETH_B"),
                        help=argparse.SUPPRESS)
    return parser


def report(probes: Sequence[Probe], as_json: bool, title: str) -> int:
    if as_json:
        print(json.dumps([p.to_dict() for p in probes], indent=1))
    else:
        render(probes, title=title)
    return exit_code(probes)
