"""netem integration tests honour the plugin's --backend option: a run pinned to one backend (e.g.
`pytest --splitbed-backend userspace`) skips the tests parametrised for the other one."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("splitbed_backend", default="auto")
    if wanted == "auto":
        return
    for item in items:
        params = getattr(item, "callspec", None)
        backend = params.params.get("backend") if params is not None else None
        if backend is not None and backend != wanted:
            item.add_marker(pytest.mark.skip(reason=f"--splitbed-backend {wanted} selected"))
