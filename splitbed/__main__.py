"""`python -m splitbed ...` is the `splitbed` command: how the testbed starts its node processes
(`python -m splitbed remote-node ...`, `python -m splitbed local-node ...`) with the interpreter it runs on,
without depending on a console script being on PATH."""

from splitbed.cli import main

raise SystemExit(main())
