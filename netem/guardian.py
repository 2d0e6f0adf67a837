"""A watchdog that tears a topology down the moment its owner dies without doing it (SIGKILL, OOM kill).

The owner's children die with it (PR_SET_PDEATHSIG), but not their children: a server that forked, a shell's
background job, anything a `netem shell` command started went on running inside the namespaces until the next
run swept them. The guardian is a small separate process (its own session, so a terminal's Ctrl-C does not reach
it) holding the read end of a pipe whose only write end the owner holds. A clean close writes a byte first and
the guardian just exits; end-of-file without that byte means the owner is gone, and the guardian kills every
process left in the topology's namespaces and removes them. Opt-in (`Topology(guard=True)`; `netem shell` uses
it): tests that study the next-start sweep kill owners on purpose.

    python -m netem.guardian --fd N NAMESPACE...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from netem.pyexec import python_module

DONE = b"d"


class Guardian:
    """The owner's side: start() before creating the namespaces, stop() after removing them."""

    def __init__(self, namespaces: list[str]) -> None:
        self.namespaces = list(namespaces)
        self._write: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Guardian:
        read, write = os.pipe()  # not inheritable (PEP 446): no other child holds the write end open
        try:
            self.process = subprocess.Popen(
                python_module("netem.guardian", "--fd", str(read), "--owner-pid", str(os.getpid()),
                              *self.namespaces), pass_fds=(read,),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        self._write = write
        return self

    def stop(self) -> None:
        """The owner cleaned up itself: tell the guardian, which exits without touching anything."""
        if self._write is None:
            return
        try:
            os.write(self._write, DONE)
        except OSError:
            pass
        os.close(self._write)
        self._write = None
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netem.guardian", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="read end of the owner's pipe")
    parser.add_argument("--owner-pid", type=int, required=True, help="for the message")
    parser.add_argument("namespaces", nargs="+")
    args = parser.parse_args(argv)
    data = b""
    while True:
        try:
            chunk = os.read(args.fd, 16)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    if DONE in data:
        return 0
    from netem.netns import kill_namespace_processes, remove_namespace

    killed, removed = 0, []
    for name in args.namespaces:
        try:
            killed += len(kill_namespace_processes(name, grace_s=0.5))
            if remove_namespace(name):
                removed.append(name)
        except Exception as exc:  # the next start's sweep gets what is left
            print(f"netem guardian: could not remove {name}: {exc}", file=sys.stderr)
    print(f"netem guardian: owner pid {args.owner_pid} died without closing its topology; killed {killed} "
          f"processes in it and removed {', '.join(removed) or 'no namespace'}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
