"""The pytest plugin's parts (the entry point is splitbed.pytest_plugin): the suite's matrices (`matrix`), pooled
testbeds (`beds`), the in-process reference model (`reference`), capture analysis (`wire`), latency budgets
(`budget`) and the fixtures themselves (`fixtures`). docs/SUITE.md documents them."""
