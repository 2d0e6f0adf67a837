"""What the host tells about the calling process and its sockets: cgroup limits, CPU steal and pressure, TCP_INFO.

Read-only, standard library only, and imported by the nodes, the testbed and the reports alike, so it sits at the
bottom of the layers (docs/ARCHITECTURE.md) next to netem and the format.
"""
