"""Dynamic-network scenarios: a TOML timeline of live link changes (steps, trace replay, outages) and a workload
that runs through them on the real testbed (docs/SCENARIOS.md).

    from splitbed import scenario
    result = scenario.run(scenario.load("drop-144-to-5"), "out/drop")
"""

from splitbed.scenario.runner import ScenarioResult, run
from splitbed.scenario.spec import LinkEvent, Scenario, ScenarioError, Workload, builtin_names, load, parse

__all__ = ["LinkEvent", "Scenario", "ScenarioError", "ScenarioResult", "Workload", "builtin_names", "load", "parse",
           "run"]
