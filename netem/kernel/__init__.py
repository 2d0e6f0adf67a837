"""The kernel backend: tc qdiscs (netem, tbf, pfifo) on the veth ends, driven through netlink.

`plan` decides the qdisc chain of each direction (pure, unit-tested), `netem_qdisc` encodes the netem qdisc's
netlink message, `link.KernelLink` installs and changes the chains, `capabilities` probes which qdisc kinds this
host's kernel really has. The userspace backend is the sibling package netem.link.
"""

from __future__ import annotations

from netem.kernel.capabilities import QdiscProbe, kernel_has, probe_qdiscs
from netem.kernel.link import KernelLink
from netem.kernel.plan import QdiscSpec, kernel_problems, needs_netem, plan_direction, required_kinds

__all__ = ["KernelLink", "QdiscProbe", "QdiscSpec", "kernel_has", "kernel_problems", "needs_netem",
           "plan_direction", "probe_qdiscs", "required_kinds"]
