"""The kernel backend's netem messages carry what iproute2's `tc` sends for the same settings.

sch_netem is missing on the development machine, so the kernel cannot judge our netem messages there. Instead
we capture the netlink request `tc qdisc add ... netem ...` writes (strace hex dump; tc sends it even when the
kernel then refuses the kind) and compare it, field by field, with ours for the same profile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest

from netem.kernel.netem_qdisc import NetemTcmsg, netem_message, netem_parameters
from netem.netns import create_namespace, remove_namespace
from netem.profile import DirectionProfile, GilbertElliott, RandomLoss

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed (scripts/setup.sh installs it)"),
    pytest.mark.skipif(shutil.which("tc") is None, reason="tc (iproute2) not installed"),
]

CASES = [
    (DirectionProfile(delay_ms=10.0), "delay 10ms"),
    (DirectionProfile(delay_ms=20.0, jitter_ms=2.0), "delay 20ms 2ms"),
    (DirectionProfile(delay_ms=10.0, jitter_ms=2.0, jitter_distribution="normal"), "delay 10ms 2ms distribution normal"),
    (DirectionProfile(delay_ms=7.0, jitter_ms=3.0, jitter_distribution="pareto"), "delay 7ms 3ms distribution pareto"),
    (DirectionProfile(delay_ms=5.0, loss=RandomLoss(0.01)), "delay 5ms loss random 1%"),
    (DirectionProfile(loss=RandomLoss(0.25)), "loss random 25%"),
    (DirectionProfile(delay_ms=4.0, loss=GilbertElliott(p=0.01, r=0.3, h=0.001, k=0.7)),
     "delay 4ms loss gemodel 1% 30% 70% 0.1%"),
    (DirectionProfile(delay_ms=4.0, loss=GilbertElliott(p=0.05, r=0.5, h=0.0, k=1.0)),
     "delay 4ms loss gemodel 5% 50% 100% 0%"),
]


def tc_request(netns: str, tc_args: str) -> bytes:
    """The RTM_NEWQDISC bytes tc sends for `tc qdisc add dev lo root handle 1: netem <tc_args> limit 100000`."""
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "strace", "-qq", "-e", "trace=sendmsg", "-e", "write=all", "-o", "/dev/stdout",
         "tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "netem", *tc_args.split(), "limit", "100000"],
        capture_output=True, text=True, timeout=30,
    )
    dumps = re.split(r"^sendmsg\(", done.stdout, flags=re.M)
    for dump in dumps:
        if "RTM_NEWQDISC" not in dump:
            continue
        data = bytearray()
        for line in dump.splitlines():
            match = re.match(r"^ \| [0-9a-f]{5}  ((?:[0-9a-f]{2} {1,2}){1,16})", line)
            if match:
                data.extend(bytes.fromhex(match.group(1).replace(" ", "")))
        return bytes(data)
    raise AssertionError(f"no RTM_NEWQDISC in strace output:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def decoded(raw: bytes) -> dict[str, Any]:
    msg = NetemTcmsg(raw)
    msg.decode()
    options = msg.get_attr("TCA_OPTIONS")
    result: dict[str, Any] = {key: options[key] for key in ("delay", "limit", "loss", "gap", "duplicate", "jitter")}
    for name, value in options["attrs"]:
        if name == "TCA_NETEM_LOSS":
            ge = value.get_attr("NETEM_LOSS_GE")
            result["gemodel"] = {k: ge[k] for k in ("p", "r", "h", "k1")} if ge is not None else None
        elif name == "TCA_NETEM_DELAY_DIST":
            result["dist"] = bytes(value) if isinstance(value, (bytes, bytearray)) else value
        else:
            result[name] = value
    return result


@pytest.fixture(scope="module")
def scratch_ns() -> Any:
    name = f"sb{os.getpid()}-gold"
    create_namespace(name)
    try:
        yield name
    finally:
        remove_namespace(name)


@pytest.mark.parametrize(("direction", "tc_args"), CASES, ids=[c[1] for c in CASES])
def test_netem_message_matches_tc(scratch_ns: str, direction: DirectionProfile, tc_args: str) -> None:
    theirs = decoded(tc_request(scratch_ns, tc_args))
    mine_msg = netem_message(1, 0x10000, 0xFFFFFFFF, netem_parameters(direction))
    mine_msg.encode()
    mine = decoded(bytes(mine_msg.data))
    for key in ("delay", "limit", "loss", "jitter", "gap", "duplicate"):
        assert mine[key] == theirs[key], key
    assert mine.get("gemodel") == theirs.get("gemodel")
    assert mine.get("dist") == theirs.get("dist")
    # We always add the 64-bit ns forms; they must equal tc's tick values (64 ns per tick).
    assert mine["TCA_NETEM_LATENCY64"] == theirs.get("TCA_NETEM_LATENCY64", theirs["delay"] * 64)
    assert mine["TCA_NETEM_JITTER64"] == theirs.get("TCA_NETEM_JITTER64", theirs["jitter"] * 64)
    assert mine["TCA_NETEM_PRNG_SEED"] == direction.seed
