"""Repo-level pytest configuration. The options (--splitbed-model, --splitbed-profile, --splitbed-full, ...)
come from the splitbed plugin (splitbed/pytest_plugin.py), installed as an entry point so other projects get
them too."""
