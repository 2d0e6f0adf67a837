"""What this machine can do for network emulation, probed for real.

Every probe does the thing it reports on (creates a scratch namespace and veth pair, adds each qdisc kind, turns
offloads off, captures frames it sent) rather than reading config, because kernels lie by omission: a module can
be listed and still be unloadable. The same probes feed `netem doctor`, `splitbed doctor` and the test suite's
must-have policy (`decide`), so a skipped test and the doctor's table always agree.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from netem.doctor.sandbox import USERNS_FIX, in_user_namespace, nonroot_fix, try_userns, userns_blockers
from netem.doctor.scratch import run_inside, scratch_error, scratch_netns

# The switch for Docker: container nodes exist (splitbed.runtime, tests/integration/docker) and the docker tests
# start an engine when none answers (splitbed.runtime.dockerd), so on CI (CI=true) a missing engine is a
# must-have failure; locally docker tests just skip.
# Set to False to make Docker optional on CI too.
DOCKER_MUST_HAVE_ON_CI = True

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
        return Probe(name, False, True, scratch_error(exc), fix=fix,
                     meaning="no testbed: nodes cannot be isolated in their own network stacks")
    return Probe(name, True, True, f"created {scratch.netns} with veth pair {scratch.veth_a}/{scratch.veth_b} "
                 f"in {took_ms:.0f} ms, removed", meaning="each node gets its own network stack, as on separate hosts")


# Per qdisc kind: the parameters to add it with (netem and tbf: netem.kernel.capabilities adds them), what having it
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


# Kinds the kernel backend itself probes (netem.kernel.capabilities); the doctor shows that very answer, so the table
# and `backend="auto"` can never disagree.
_BACKEND_PROBED_KINDS = ("netem", "tbf")


def _probe_qdisc_as_backend_sees_it(kind: str, name: str, meaning_ok: str, meaning_no: str, fix: str) -> Probe:
    try:
        from netem.kernel.capabilities import probe_qdiscs

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
        return Probe(name, False, False, f"not probed: {scratch_error(exc)}",
                     fix=nonroot_fix() if os.geteuid() != 0 else fix, meaning=meaning_no)
    if kind not in installed:
        return Probe(name, False, False, f"{kind} add returned success but the device shows {installed}",
                     fix=fix, meaning=meaning_no)
    return Probe(name, True, False, f"added and removed a {kind} qdisc on a scratch veth", meaning=meaning_ok)


def _probe_inside(name: str, check: str, must_have: bool, fix: str, meaning_ok: str, meaning_no: str) -> Probe:
    try:
        with scratch_netns() as scratch:
            answer = run_inside(scratch, check)
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
    from netem import hostprobes  # imports netem.doctor: loaded when first used

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
