"""What this machine can do for network emulation, probed for real.

Every probe does the thing it reports on (creates a scratch namespace and veth pair, adds each qdisc kind, turns
offloads off, captures frames it sent) rather than reading config, because kernels lie by omission: a module can
be listed and still be unloadable. The same probes feed `netem doctor`, `splitbed doctor` and the test suite's
must-have policy (`decide`), so a skipped test and the doctor's table always agree.

Run `python -m netem.doctor` (or `netem doctor`) for the table; `--json` for a machine-readable list.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from netem.naming import pid_alive
from netem.pyexec import python_module

# The switch for Docker: container nodes exist (splitbed.runtime, tests/integration/docker) and the docker tests
# start an engine when none answers (splitbed.runtime.dockerd), so on CI (CI=true) a missing engine is a
# must-have failure; locally docker tests just skip.
# Set to False to make Docker optional on CI too.
DOCKER_MUST_HAVE_ON_CI = True

# Environment variable set inside the user-namespace sandbox the doctor re-executes into (see userns_wrapper).
USERNS_ENV = "SPLITBED_USERNS"

# Scratch objects are `sb<pid>dr<n>` (namespace); the veth pair lives only inside it, so the host never sees it.
SCRATCH_ROLE = "dr"
_SCRATCH_NAME = re.compile(rf"^sb(\d+){SCRATCH_ROLE}\d+$")
_scratch_counter = itertools.count()
_scratch_lock = threading.Lock()

# Frames the capture probe sends: IEEE 802 local experimental ethertype, a marker nobody else uses.
_CAPTURE_ETHERTYPE = 0x88B5
_CAPTURE_MARKER = b"splitbed-doctor-capture"
_CAPTURE_FRAMES = 5

# The capture probe's child process answers with one JSON line; never read more than this.
_CHILD_OUTPUT_CAP = 64 * 1024
_CHILD_TIMEOUT_S = 90.0

Decision = Literal["run", "skip", "fail"]


@dataclass(frozen=True)
class Probe:
    """One capability of this machine: whether it works, whether the testbed cannot do without it, the
    evidence (`detail`), what to do when it is missing (`fix`) and what the result means for measurements."""

    name: str
    ok: bool
    must_have: bool
    detail: str
    fix: str = ""
    meaning: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Policy shared by the doctor's exit code and the test suite


def is_ci(environ: Mapping[str, str] | None = None) -> bool:
    """CI systems set CI=true; there a missing must-have is a failure, never a quiet skip."""
    env = os.environ if environ is None else environ
    return env.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def decide(probe: Probe, ci: bool) -> Decision:
    """What a test that needs `probe` does: run it, skip it with the probe's reason, or fail (CI + must-have)."""
    if probe.ok:
        return "run"
    return "fail" if (ci and probe.must_have) else "skip"


def missing_must_haves(probes: Sequence[Probe]) -> list[Probe]:
    return [p for p in probes if p.must_have and not p.ok]


def exit_code(probes: Sequence[Probe]) -> int:
    """0 when every must-have is present, 1 otherwise."""
    return 1 if missing_must_haves(probes) else 0


# ---------------------------------------------------------------------------------------------------------------
# Non-root: a user + network + mount namespace sandbox


def userns_wrapper(argv: Sequence[str]) -> list[str]:
    """The command that runs `argv` as root inside a new user, network and mount namespace.

    A private tmpfs on /run/netns (or /run if that does not exist yet) is needed because named network
    namespaces are bind mounts under /run/netns, which an unprivileged user cannot write on the host.
    """
    script = (
        "d=/run/netns; [ -d $d ] || d=/run; "
        "mount -t tmpfs splitbed-userns $d && mkdir -p /run/netns && exec \"$@\""
    )
    return ["unshare", "--user", "--map-root-user", "--net", "--mount", "--", "sh", "-c", script, "sh", *argv]


def in_user_namespace() -> bool:
    """True when this process runs in a user namespace other than the initial one (uid_map is not identity)."""
    try:
        first = Path("/proc/self/uid_map").read_text().split("\n", 1)[0].split()
    except OSError:
        return False
    return first != ["0", "0", "4294967295"]


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def userns_blockers() -> list[str]:
    """Kernel settings that forbid unprivileged user namespaces, as human-readable reasons (empty: none)."""
    reasons = []
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
        reasons.append("kernel.unprivileged_userns_clone=0")
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        reasons.append("user.max_user_namespaces=0")
    if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
        reasons.append("kernel.apparmor_restrict_unprivileged_userns=1")
    return reasons


def try_userns() -> tuple[bool, str]:
    """Really create a user + network namespace (as the current user) and report whether it worked."""
    if shutil.which("unshare") is None:
        return False, "unshare (util-linux) not found"
    try:
        done = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--net", "--mount", "true"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"unshare failed: {exc}"
    if done.returncode != 0:
        return False, f"unshare failed: {done.stderr.strip()[:200]}"
    return True, "unshare --user --map-root-user --net works"


USERNS_FIX = (
    "run as root (sudo), or allow unprivileged user namespaces: sysctl -w kernel.unprivileged_userns_clone=1 "
    "user.max_user_namespaces=15000 (Ubuntu: kernel.apparmor_restrict_unprivileged_userns=0)"
)


def nonroot_fix(command: str = "make test") -> str:
    return f"run as root, or inside a user namespace: {shlex.join(userns_wrapper(shlex.split(command)))}"


# ---------------------------------------------------------------------------------------------------------------
# Scratch namespace


@dataclass(frozen=True)
class Scratch:
    """A throw-away namespace holding a veth pair `veth_a` <-> `veth_b`, both up."""

    netns: str
    veth_a: str
    veth_b: str


def sweep_stale_scratch() -> list[str]:
    """Remove scratch namespaces left by doctor runs that died (owner pid gone); returns the names removed.
    Only names matching `sb<pid>dr<n>` with a dead pid are touched: never anyone else's namespaces."""
    from pyroute2 import netns

    removed = []
    for name in netns.listnetns():
        match = _SCRATCH_NAME.match(name)
        if match and not pid_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                netns.remove(name)
                removed.append(name)
    return removed


@contextlib.contextmanager
def scratch_netns() -> Iterator[Scratch]:
    """Create `sb<pid>dr<n>` with a veth pair inside (never on the host), yield it, always remove it."""
    from pyroute2 import IPRoute, netns

    with _scratch_lock:
        number = next(_scratch_counter)
    pid = os.getpid()
    scratch = Scratch(f"sb{pid}{SCRATCH_ROLE}{number}", f"sb{pid}d{number}a", f"sb{pid}d{number}b")
    sweep_stale_scratch()
    netns.create(scratch.netns)
    try:
        with IPRoute(netns=scratch.netns) as ipr:
            ipr.link("add", ifname=scratch.veth_a, kind="veth", peer={"ifname": scratch.veth_b})
            for ifname in ("lo", scratch.veth_a, scratch.veth_b):
                ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
        yield scratch
    finally:
        netns.remove(scratch.netns)


def _scratch_error(exc: BaseException) -> str:
    return f"cannot create a scratch network namespace: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------------------------
# Probes


def probe_root_or_userns() -> Probe:
    name = "root_or_userns"
    euid = os.geteuid()
    if euid == 0 and not in_user_namespace():
        return Probe(name, True, True, "running as root", meaning="namespaces, veths and qdiscs are created directly")
    if euid == 0:
        return Probe(name, True, True, "root inside a user namespace (not root on the host)",
                     meaning="namespaces live inside this sandbox; results are the same, nothing touches the host")
    blockers = userns_blockers()
    if blockers:
        return Probe(name, False, True, f"uid {euid}, not root; user namespaces disabled: {', '.join(blockers)}",
                     fix=USERNS_FIX, meaning="no network emulation possible as this user")
    works, how = try_userns()
    if not works:
        return Probe(name, False, True, f"uid {euid}, not root; {how}", fix=USERNS_FIX,
                     meaning="no network emulation possible as this user")
    return Probe(name, True, True, f"uid {euid}, not root; {how}", fix=nonroot_fix(),
                 meaning="run the testbed inside a user namespace (the doctor does so by itself)")


def probe_netns() -> Probe:
    name = "netns"
    try:
        started = time.perf_counter()
        with scratch_netns() as scratch:
            took_ms = (time.perf_counter() - started) * 1e3
    except Exception as exc:  # any failure here is the finding itself
        fix = nonroot_fix() if os.geteuid() != 0 else "check that the kernel has CONFIG_NET_NS and CONFIG_VETH"
        return Probe(name, False, True, _scratch_error(exc), fix=fix,
                     meaning="no testbed: nodes cannot be isolated in their own network stacks")
    return Probe(name, True, True, f"created {scratch.netns} with veth pair {scratch.veth_a}/{scratch.veth_b} "
                 f"in {took_ms:.0f} ms, removed", meaning="each node gets its own network stack, as on separate hosts")


# Per qdisc kind: the parameters to add it with (netem and tbf: netem.capabilities adds them), what having it
# and lacking it mean, and the fix.
_QDISCS: dict[str, tuple[dict[str, object], str, str, str]] = {
    "netem": (
        {},
        "the kernel backend can emulate delay, jitter and loss",
        "delay, jitter and loss need the userspace link (netem/link); kernel-backend tests skip",
        "modprobe sch_netem (needs a kernel with CONFIG_NET_SCH_NETEM; stock Debian/Ubuntu kernels ship it as a "
        "module), or use the userspace backend",
    ),
    "tbf": (
        {},
        "the kernel can shape rate with a token bucket",
        "rate shaping needs the userspace link",
        "modprobe sch_tbf (CONFIG_NET_SCH_TBF)",
    ),
    "htb": (
        {"default": 0x10},
        "the kernel can shape rate with HTB classes",
        "classful kernel shaping unavailable",
        "modprobe sch_htb (CONFIG_NET_SCH_HTB)",
    ),
}


# Kinds the kernel backend itself probes (netem.capabilities); the doctor shows that very answer, so the table
# and `backend="auto"` can never disagree.
_BACKEND_PROBED_KINDS = ("netem", "tbf")


def _probe_qdisc_as_backend_sees_it(kind: str, name: str, meaning_ok: str, meaning_no: str, fix: str) -> Probe:
    try:
        from netem.capabilities import probe_qdiscs

        result = probe_qdiscs()[kind]
    except Exception as exc:
        return Probe(name, False, False, f"not probed: {type(exc).__name__}: {exc}",
                     fix=nonroot_fix() if os.geteuid() != 0 else fix, meaning=meaning_no)
    if result.available:
        return Probe(name, True, False, result.detail, meaning=meaning_ok)
    return Probe(name, False, False, result.detail, fix=fix, meaning=meaning_no)


def probe_qdisc(kind: str) -> Probe:
    """Add qdisc `kind` on a veth in a scratch namespace; the kernel answers 'unknown kind' when it lacks it."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    params, meaning_ok, meaning_no, fix = _QDISCS[kind]
    name = "sch_netem" if kind == "netem" else kind
    if kind in _BACKEND_PROBED_KINDS:
        return _probe_qdisc_as_backend_sees_it(kind, name, meaning_ok, meaning_no, fix)
    try:
        with scratch_netns() as scratch, IPRoute(netns=scratch.netns) as ipr:
            index = ipr.link_lookup(ifname=scratch.veth_a)[0]
            try:
                ipr.tc("add", kind, index=index, handle="1:", **params)
            except NetlinkError as exc:
                why = "qdisc kind is unknown to this kernel" if exc.code == 2 else exc.args[-1]
                return Probe(name, False, False, f"adding a {kind} qdisc failed: {why} (errno {exc.code})",
                             fix=fix, meaning=meaning_no)
            installed = [q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(index=index)]
            ipr.tc("del", index=index, handle="1:", root=True)
    except Exception as exc:
        return Probe(name, False, False, f"not probed: {_scratch_error(exc)}",
                     fix=nonroot_fix() if os.geteuid() != 0 else fix, meaning=meaning_no)
    if kind not in installed:
        return Probe(name, False, False, f"{kind} add returned success but the device shows {installed}",
                     fix=fix, meaning=meaning_no)
    return Probe(name, True, False, f"added and removed a {kind} qdisc on a scratch veth", meaning=meaning_ok)


def _run_inside(scratch: Scratch, check: str) -> dict[str, object]:
    """Run `check` in a child process entered into the scratch namespace (scapy opens its sockets in its own
    sniffer thread, so the whole process must be in the namespace). Returns the child's JSON answer."""
    argv = python_module("netem.doctor", "--inside", scratch.netns, check, scratch.veth_a, scratch.veth_b)
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
    done = subprocess.run(argv, capture_output=True, timeout=_CHILD_TIMEOUT_S, env=env)
    out = done.stdout[-_CHILD_OUTPUT_CAP:].decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not out:
        err = done.stderr[-2000:].decode(errors="replace").strip().splitlines()
        return {"ok": False, "detail": f"probe process failed (exit {done.returncode}): {err[-1] if err else ''}"}
    try:
        answer = json.loads(out[-1])
    except json.JSONDecodeError:
        return {"ok": False, "detail": f"probe process answered non-JSON: {out[-1][:200]!r}"}
    if not isinstance(answer, dict):
        return {"ok": False, "detail": f"probe process answered {answer!r}"}
    return answer


def _probe_inside(name: str, check: str, must_have: bool, fix: str, meaning_ok: str, meaning_no: str) -> Probe:
    try:
        with scratch_netns() as scratch:
            answer = _run_inside(scratch, check)
    except Exception as exc:
        return Probe(name, False, must_have, f"not probed: {type(exc).__name__}: {exc}",
                     fix=nonroot_fix() if os.geteuid() != 0 else fix, meaning=meaning_no)
    ok = bool(answer.get("ok"))
    return Probe(name, ok, must_have, str(answer.get("detail", "")), fix="" if ok else fix,
                 meaning=meaning_ok if ok else meaning_no)


def probe_ethtool_offloads() -> Probe:
    """Turn offloads off on a scratch veth with the topology's own code (netem.offload), and check what stuck."""
    name = "ethtool_offloads"
    fix = ("a kernel that lets TSO/GSO/GRO and tx checksum be turned off on veth (mainline kernels do); the detail "
           "names the call that failed")
    meaning_no = "the link would see 64 KB super-packets: rate, loss and packet counts would be wrong"
    try:
        from netem.offload import disable_offloads

        with scratch_netns() as scratch:
            result = disable_offloads(scratch.netns, scratch.veth_a)
    except Exception as exc:
        return Probe(name, False, True, f"{type(exc).__name__}: {exc}",
                     fix=nonroot_fix() if os.geteuid() != 0 else fix, meaning=meaning_no)
    off = sorted(feature for feature, on in result["features"].items() if not on)
    if result["still_on"]:
        return Probe(name, False, True, f"still on after disabling: {', '.join(result['still_on'])}", fix=fix,
                     meaning=meaning_no)
    return Probe(name, True, True, f"turned off and read back on a scratch veth ({', '.join(off)}, ...) via "
                 f"{result['method']}", meaning="the emulated link sees real MTU-sized packets with final checksums")


def probe_scapy_capture() -> Probe:
    return _probe_inside(
        "scapy_capture", "capture", True,
        "pip install scapy (bash scripts/setup.sh does); capture needs CAP_NET_RAW (root or user namespace)",
        "wire figures (packets, bytes on the wire, retransmissions) come from real captures",
        "no wire figures: captures cannot be taken",
    )


def probe_tool(tool: str) -> Probe:
    """iperf3 and ping are the independent referees of link fidelity (throughput, RTT)."""
    what = {"iperf3": "throughput", "ping": "RTT"}[tool]
    package = {"iperf3": "iperf3", "ping": "iputils-ping"}[tool]
    path = shutil.which(tool)
    if path is None:
        return Probe(tool, False, True, f"{tool} not on PATH",
                     fix=f"apt-get install {package} (bash scripts/setup.sh does)",
                     meaning=f"link {what} fidelity cannot be checked against a real tool")
    return Probe(tool, True, True, path, meaning=f"link {what} fidelity is checked with {tool}")


def probe_docker(timeout_s: float = 2.0) -> Probe:
    name = "docker"
    must_have = DOCKER_MUST_HAVE_ON_CI and is_ci()
    fix = "apt-get install docker.io, then bash scripts/docker-engine.sh (starts dockerd without bridge or NAT)"
    meaning_no = "nodes run as processes in namespaces (the default); docker-node tests skip"
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:
        return Probe(name, False, must_have, f"docker SDK missing: {exc}", fix="pip install docker",
                     meaning=meaning_no)
    try:
        client = docker.from_env(timeout=int(max(1, timeout_s)))
        try:
            client.ping()
            version = client.version().get("Version", "?")
        finally:
            client.close()
    except (DockerException, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Permission denied" in first_line:
            fix = "run as root, or add this user to the docker group"
        return Probe(name, False, must_have, f"no engine reachable: {first_line[:160]}", fix=fix,
                     meaning=meaning_no)
    return Probe(name, True, must_have, f"engine {version} answers ping",
                 meaning="nodes can also run in containers")


PROBES: dict[str, Callable[[], Probe]] = {
    "root_or_userns": probe_root_or_userns,
    "netns": probe_netns,
    "sch_netem": lambda: probe_qdisc("netem"),
    "tbf": lambda: probe_qdisc("tbf"),
    "htb": lambda: probe_qdisc("htb"),
    "ethtool_offloads": probe_ethtool_offloads,
    "scapy_capture": probe_scapy_capture,
    "iperf3": lambda: probe_tool("iperf3"),
    "ping": lambda: probe_tool("ping"),
    "docker": probe_docker,
    "docker_cgroup": lambda: _host_probe("probe_docker_cgroup"),
    "realtime": lambda: _host_probe("probe_realtime"),
}


def _host_probe(name: str) -> Probe:
    from netem import hostprobes  # imports this module: loaded when first used

    probe: Callable[[], Probe] = getattr(hostprobes, name)
    return probe()


def run_probe(name: str) -> Probe:
    try:
        probe = PROBES[name]
    except KeyError:
        raise KeyError(f"unknown netem probe {name!r}; known: {', '.join(PROBES)}") from None
    return probe()


def probe_all() -> list[Probe]:
    return [probe() for probe in PROBES.values()]


# ---------------------------------------------------------------------------------------------------------------
# Checks run inside the scratch namespace (child process)


def _check_capture(sender: str, receiver: str) -> dict[str, object]:
    """Send marked Ethernet frames on one veth end with scapy and sniff them on the other."""
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.sendrecv import AsyncSniffer, sendp

    started = threading.Event()

    def ours(packet: object) -> bool:
        return bool(Raw in packet and _CAPTURE_MARKER in bytes(packet[Raw]))  # type: ignore[operator,index]

    sniffer = AsyncSniffer(iface=receiver, lfilter=ours, count=_CAPTURE_FRAMES, store=True,
                           started_callback=started.set)
    sniffer.start()
    if not started.wait(10):
        sniffer.stop()
        return {"ok": False, "detail": "sniffer did not start within 10 s"}
    frame = Ether(dst="ff:ff:ff:ff:ff:ff", type=_CAPTURE_ETHERTYPE) / Raw(_CAPTURE_MARKER)
    sendp(frame, iface=sender, count=_CAPTURE_FRAMES, verbose=False)
    sniffer.join(12)
    if sniffer.running:
        sniffer.stop()
    got = len(sniffer.results or [])
    ok = got == _CAPTURE_FRAMES
    return {"ok": ok, "detail": f"sent {_CAPTURE_FRAMES} frames over a scratch veth, captured {got} with scapy"}


def _inside(netns_name: str, check: str, veth_a: str, veth_b: str) -> int:
    from pyroute2 import netns

    netns.setns(netns_name, flags=0)
    try:
        answer = _check_capture(veth_a, veth_b)
    except Exception as exc:
        answer = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(answer))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Output


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


def reexec_in_userns_if_needed(module: str, argv: Sequence[str], allow: bool) -> None:
    """Not root and user namespaces work: replace this process by the same doctor inside a userns sandbox."""
    if not allow or os.geteuid() == 0 or os.environ.get(USERNS_ENV) == "1":
        return
    if userns_blockers() or not try_userns()[0]:
        return
    env = dict(os.environ, **{USERNS_ENV: "1"})
    command = userns_wrapper(python_module(module, *argv))
    sys.stdout.flush()
    os.execvpe(command[0], command, env)


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


def main(argv: Sequence[str] | None = None) -> int:
    """`netem doctor`: print the table of netem probes and return the exit code (1: a must-have is missing)."""
    args = build_parser("netem doctor").parse_args(argv)
    if args.inside:
        return _inside(*args.inside)
    raw = list(sys.argv[1:] if argv is None else argv)
    reexec_in_userns_if_needed("netem.doctor", raw, allow=not args.no_userns)
    return report(probe_all(), args.json, "netem doctor")


if __name__ == "__main__":
    sys.exit(main())
