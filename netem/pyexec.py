"""Command lines for child Pythons that never import from the working directory.

`python -m pkg.mod` puts the current directory first on sys.path, so a file such as `argparse.py` or `json.py`
lying in the directory a run was started from would be imported instead of the standard module, by processes
that run as root inside the namespaces (the link forwarder, captures, both inference nodes). Every child Python
this project starts goes through `python_module`: `-P` (Python >= 3.11: no unsafe path prepended), or on older
interpreters a `-c` bootstrap that drops that path before importing anything else. Commands a user hands to
`netem shell` get `PYTHONSAFEPATH=1` in their environment (`safe_env`) for the same effect on their own
`python -m ...`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

_BOOTSTRAP = ("import sys; del sys.path[0]; import runpy; module = sys.argv.pop(1); "
              "runpy.run_module(module, run_name='__main__', alter_sys=True)")


def python_module(module: str, *args: str, python: str | None = None) -> list[str]:
    """argv running `python -m module args...` without the working directory on sys.path.

    `python` defaults to this interpreter; another one must be the same version (the flag is chosen for it).
    """
    exe = python or sys.executable
    if sys.version_info >= (3, 11):
        return [exe, "-P", "-m", module, *args]
    return [exe, "-c", _BOOTSTRAP, module, *args]


def safe_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: ours) with PYTHONSAFEPATH=1, for commands that may start Python themselves."""
    out = dict(os.environ if env is None else env)
    out["PYTHONSAFEPATH"] = "1"
    return out
