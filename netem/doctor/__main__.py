"""`python -m netem.doctor`: the doctor, and the entry of the capture check's child process (`--inside`)."""

import sys

from netem.doctor import main

sys.exit(main())
