"""netem: network emulation for testbeds (namespaces, link profiles, kernel and userspace links, capture).

Knows nothing of ML, so it can be used on its own.
"""

__version__ = "0.1.0"
