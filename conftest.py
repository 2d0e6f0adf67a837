"""Repo-level pytest configuration. The options (--splitbed-model, --splitbed-profile, --splitbed-full, ...)
come from the splitbed plugin (splitbed/pytest_plugin.py), installed as an entry point so other projects get
them too."""

from hypothesis import settings

# No per-example deadline: hypothesis's default (200 ms) is a timing check, and on a shared VM whose hypervisor steals
# CPU an example that takes 46 ms when idle (the median's CI ranks for n = 400) can pass it once in a while.
settings.register_profile("splitbed", deadline=None)
settings.load_profile("splitbed")
