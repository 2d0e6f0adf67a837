"""Run a program inside a network namespace: `python -m netem.nsexec NSNAME [--die-with-parent] -- ARGV...`.

setns(2) then execvp(3): the program replaces this process, so its pid, exit status and signals are exactly the
program's. `preexec_enter()` does the same in a Popen child without the extra interpreter start.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from collections.abc import Callable

from netem.netns import open_namespace, setns

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def set_parent_death_signal(signum: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `signum` to this process when the thread that forked it dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def preexec_enter(ns_fd: int, *, die_with_parent: bool) -> Callable[[], None]:
    """A Popen `preexec_fn` entering the namespace open at `ns_fd` (opened by the parent, passed via pass_fds).

    Only async-signal-safe-ish calls (prctl, setns through ctypes already loaded, close) run after fork.
    """
    parent = os.getpid()

    def enter() -> None:
        if die_with_parent:
            set_parent_death_signal(signal.SIGKILL)
            if os.getppid() != parent:  # the parent died between fork and prctl
                os._exit(1)
        setns(ns_fd)
        os.close(ns_fd)

    return enter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netem.nsexec", description=__doc__)
    parser.add_argument("namespace", help="network namespace name (as in /var/run/netns)")
    parser.add_argument("--die-with-parent", action="store_true", help="get SIGKILL when the parent dies")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- program and arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (usage: NSNAME -- PROGRAM ARGS...)")
    if args.die_with_parent:
        set_parent_death_signal(signal.SIGKILL)
    try:
        fd = open_namespace(args.namespace)
        setns(fd)
        os.close(fd)
    except Exception as exc:
        print(f"netem.nsexec: cannot enter namespace {args.namespace}: {exc}", file=sys.stderr)
        return 125
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"netem.nsexec: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
