"""What the host tells about the calling process and its sockets: cgroup limits, CPU steal and pressure, TCP_INFO;
and how fast the host computes right now (`speed`: a fixed reference workload in a pinned child).

Read-only, standard library only (the speed reference's child loads numpy), and imported by the nodes, the testbed and the reports alike, so it sits at the
bottom of the layers (docs/ARCHITECTURE.md) next to netem and the format.
"""
