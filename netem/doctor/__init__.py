"""`netem doctor`: what this machine can do for network emulation, probed for real (netem.doctor.probes), in a
user-namespace sandbox when not root (netem.doctor.sandbox), on throw-away scratch namespaces
(netem.doctor.scratch), printed as a table or JSON (netem.doctor.render).

Run `python -m netem.doctor` (or `netem doctor`) for the table; `--json` for a machine-readable list.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from netem.doctor.probes import (
    DOCKER_MUST_HAVE_ON_CI,
    PROBES,
    Decision,
    Probe,
    decide,
    exit_code,
    is_ci,
    missing_must_haves,
    probe_all,
    probe_docker,
    probe_ethtool_offloads,
    probe_netns,
    probe_qdisc,
    probe_root_or_userns,
    probe_scapy_capture,
    probe_tool,
    run_probe,
)
from netem.doctor.render import build_parser, render, report
from netem.doctor.sandbox import (
    USERNS_ENV,
    USERNS_FIX,
    in_user_namespace,
    nonroot_fix,
    reexec_in_userns_if_needed,
    try_userns,
    userns_blockers,
    userns_wrapper,
)
from netem.doctor.scratch import SCRATCH_NAME, Scratch, inside, scratch_netns, sweep_stale_scratch

__all__ = [
    "DOCKER_MUST_HAVE_ON_CI", "PROBES", "SCRATCH_NAME", "USERNS_ENV", "USERNS_FIX", "Decision", "Probe", "Scratch",
    "build_parser", "decide", "exit_code", "in_user_namespace", "is_ci", "main", "missing_must_haves",
    "nonroot_fix", "probe_all", "probe_docker", "probe_ethtool_offloads", "probe_netns", "probe_qdisc",
    "probe_root_or_userns", "probe_scapy_capture", "probe_tool", "reexec_in_userns_if_needed", "render", "report",
    "run_probe", "scratch_netns", "sweep_stale_scratch", "try_userns", "userns_blockers", "userns_wrapper",
]


def main(argv: Sequence[str] | None = None) -> int:
    """`netem doctor`: print the table of netem probes and return the exit code (1: a must-have is missing)."""
    args = build_parser("netem doctor").parse_args(argv)
    if args.inside:
        return inside(*args.inside)
    raw = list(sys.argv[1:] if argv is None else argv)
    reexec_in_userns_if_needed("netem.doctor", raw, allow=not args.no_userns)
    return report(probe_all(), args.json, "netem doctor")
