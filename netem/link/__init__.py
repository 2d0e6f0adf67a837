"""The userspace link: a process in the middle namespace that forwards Ethernet frames between the ue and edge
sides through composable impairment stages (loss, rate or trace with a queue, delay/jitter), like mahimahi's
shells but at layer 2. See docs/LINK.md.

`LinkProcess.start(netns, ue_ifname, edge_ifname, profile)` runs it; `.update(profile)`, `.stats()`, `.stop()`.
"""

from netem.link.options import ForwarderOptions
from netem.link.pipeline import DirectionPipeline, build_stages
from netem.link.process import LinkProcess

__all__ = ["DirectionPipeline", "ForwarderOptions", "LinkProcess", "build_stages"]
