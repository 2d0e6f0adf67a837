"""Scenario files: the built-ins load, steps resolve into complete link profiles (changes accumulate, outages
restore what was there, traces and rates replace each other), and every malformed file is a ScenarioError that
names the step and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from netem.profile import LinkProfile, RandomLoss
from splitbed.cli import app
from splitbed.scenario import ScenarioError, builtin_names, load, parse


def table(**parts: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "t", "profile": "5g-split-ai",
                            "workload": {"model": "mobilenet_v2", "inferences": 5}}
    data.update(parts)
    return data


def test_builtins_load_and_name_themselves() -> None:
    names = builtin_names()
    assert {"drop-144-to-5", "outage-3s", "outage-timeout", "driving-trace"} <= set(names)
    for name in names:
        scenario = load(name)
        assert scenario.name == name and scenario.events
        assert scenario.source.endswith(f"{name}.toml")


def test_drop_builtin_is_the_issue_scenario() -> None:
    scenario = load("drop-144-to-5")
    base = LinkProfile.load("5g-split-ai")
    assert scenario.base == base and scenario.workload.adaptive
    drop, back = scenario.events
    assert drop.profile.uplink.rate_mbit == 5.0 and drop.profile.uplink.queue_bytes == 62500
    assert drop.profile.uplink.delay_ms == base.uplink.delay_ms and drop.profile.downlink == base.downlink
    assert back.profile.uplink.rate_mbit == base.uplink.rate_mbit and back.at_s > drop.at_s


def test_devices_default_to_the_phone_and_are_validated() -> None:
    scenario = load("drop-144-to-5")
    assert (scenario.ue_device, scenario.edge_device) == ("phone-midrange", "host")
    assert scenario.policy is not None and "ue_slowdown" not in scenario.policy  # the phone is emulated
    assert parse(table()).ue_device == "phone-midrange"
    chosen = parse(table(ue_device="phone-flagship", edge_device="edge-l4"))
    assert (chosen.ue_device, chosen.edge_device) == ("phone-flagship", "edge-l4")
    assert chosen.to_dict()["ue_device"] == "phone-flagship"
    with pytest.raises(ScenarioError, match="ue_device: device 'edge-l4' is an edge profile"):
        parse(table(ue_device="edge-l4"))
    with pytest.raises(ScenarioError, match="edge_device: 'gpu' is neither a built-in device profile"):
        parse(table(edge_device="gpu"))


def test_changes_accumulate_and_an_outage_restores_the_link_before_it() -> None:
    scenario = parse(table(step=[
        {"at_s": 1, "uplink": {"rate_mbit": 20}},
        {"at_s": 2, "downlink": {"delay_ms": 7, "loss": 0.01}},
        {"at_s": 3, "outage_s": 1.5},
        {"at_s": 4.5, "profile": "lte"}]))
    kinds = [(e.at_s, e.kind) for e in scenario.events]
    assert kinds == [(1, "change"), (2, "change"), (3, "outage_start"), (4.5, "outage_end"), (4.5, "profile")]
    second = scenario.events[1].profile
    assert second.uplink.rate_mbit == 20 and second.downlink.delay_ms == 7
    assert second.downlink.loss == RandomLoss(0.01)
    down = scenario.events[2].profile
    assert down.uplink.loss == RandomLoss(1.0) and down.downlink.loss == RandomLoss(1.0)
    assert down.uplink.rate_mbit == 20  # what was queued before the outage still drains at the link's rate
    assert scenario.events[3].profile == second
    assert scenario.events[4].profile == LinkProfile.load("lte")
    assert scenario.outages == [(3, 4.5)]


def test_trace_and_rate_replace_each_other() -> None:
    scenario = parse(table(step=[{"at_s": 1, "uplink": {"trace": "mmwave-driving.tput"}},
                                 {"at_s": 2, "uplink": {"rate_mbit": 50}}]))
    traced, rated = (e.profile.uplink for e in scenario.events)
    assert traced.rate_mbit is None and traced.trace is not None and traced.trace.kind == "throughput"
    assert Path(traced.trace.path).is_file()
    assert rated.trace is None and rated.rate_mbit == 50


def test_a_trace_step_can_start_the_replay_part_way_in() -> None:
    scenario = parse(table(step=[{"at_s": 1, "uplink": {"trace": {"path": "mmwave-driving.tput",
                                                                  "kind": "throughput", "start_s": 11}}}]))
    trace = scenario.events[0].profile.uplink.trace
    assert trace is not None and trace.start_s == 11.0  # the 0 Mbit/s outage second of the built-in trace
    for bad in (-1, "soon", True):
        with pytest.raises(ScenarioError, match="start_s"):
            parse(table(step=[{"at_s": 1, "uplink": {"trace": {"path": "mmwave-driving.tput", "kind": "throughput",
                                                               "start_s": bad}}}]))


def test_input_size_steps_change_the_workload_not_the_link() -> None:
    scenario = parse(table(workload={"model": "mobilenet_v2", "inferences": 5, "input_size": [192, 192]},
                           step=[{"at_s": 1, "uplink": {"rate_mbit": 20}}, {"at_s": 2, "input_size": [160, 128]}]))
    assert scenario.workload.input_size == (192, 192)
    change, resize = scenario.events
    assert (resize.kind, resize.input_size, resize.label) == ("input_size", (160, 128), "input 160x128")
    assert resize.profile == change.profile  # the link stays as it was


def test_model_spec_input_sizes() -> None:
    from splitbed.models import registry
    from splitbed.models.errors import ModelError

    mobilenet = registry.get("mobilenet_v2")
    assert mobilenet.variable_input and registry.get("resnet50").variable_input
    assert mobilenet.at_input_size(224, 224) is mobilenet
    sized = mobilenet.at_input_size(160, 96)
    assert sized.input_shape == (160, 96, 3) and sized.target_size == (160, 96)
    assert sized.partitions == mobilenet.partitions
    with pytest.raises(ModelError, match="vgg16 takes only 224x224"):
        registry.get("vgg16").at_input_size(160, 160)
    for bad in ((16, 160), (160, 4096), (True, 160)):
        with pytest.raises(ModelError, match="each side must be an integer 32..1024"):
            mobilenet.at_input_size(*bad)


def test_job_input_size_is_checked() -> None:
    from splitbed.nodes.errors import ConfigurationError
    from splitbed.nodes.jobs import parse_job

    assert parse_job('{"input_size": [160, 128]}').input_size == [160, 128]
    for bad in ('[160]', '[160, 4000]', '"160x160"', '[160.0, 160]'):
        with pytest.raises(ConfigurationError, match="input_size must be"):
            parse_job('{"input_size": ' + bad + '}')


@pytest.mark.parametrize(("parts", "message"), [
    ({"bogus": 1}, "unknown key(s) ['bogus']"),
    ({"workload": {"model": "mobilenet_v2"}}, "needs inferences or duration_s"),
    ({"workload": {"model": "mobilenet_v2", "inferences": 0}}, "workload.inferences = 0 is outside [1,"),
    ({"workload": {"model": "mobilenet_v2", "inferences": 3, "gap_ms": -5}}, "workload.gap_ms = -5"),
    ({"workload": {"model": "mobilenet_v2", "inferences": 3, "partition": "input_layer"},
      "policy": {"ue_slowdown": 2}}, "[policy] applies only"),
    ({"workload": {"model": "mobilenet_v2", "inferences": 3, "partition": "adaptive"},
      "policy": {"alpha": 2}}, "policy.alpha = 2 is outside"),
    ({"workload": {"model": "mobilenet_v2", "inferences": 3, "partition": "adaptive", "encoding": "json-baseline"}},
     "needs the tlv encoding"),
    ({"step": [{"uplink": {"rate_mbit": 5}}]}, "step 1: needs at_s"),
    ({"step": [{"at_s": 2, "uplink": {"rate_mbit": 5}}, {"at_s": 2, "uplink": {"rate_mbit": 6}}]},
     "step 2: at_s = 2 must be later"),
    ({"step": [{"at_s": 2, "outage_s": 3}, {"at_s": 4, "uplink": {"rate_mbit": 6}}]},
     "falls inside the outage of step 1"),
    ({"step": [{"at_s": 2, "outage_s": 3, "uplink": {"rate_mbit": 6}}]}, "exactly one of"),
    ({"step": [{"at_s": 2, "uplink": {"rate_mbit": -6}}]}, "rate_mbit = -6.0 is outside"),
    ({"step": [{"at_s": 2, "uplink": {"bandwidth": 6}}]}, "unknown key(s) ['bandwidth']"),
    ({"step": [{"at_s": 2, "uplink": {"trace": "nothing-here.tput"}}]}, "not found"),
    ({"step": [{"at_s": 2, "uplink": {"trace": "file.csv"}}]}, "cannot tell the trace kind"),
    ({"step": [{"at_s": 2, "profile": "no-such-profile"}]}, "no built-in profile named"),
    ({"workload": {"model": "mobilenet_v2", "duration_s": 5}, "step": [{"at_s": 6, "uplink": {"rate_mbit": 5}}]},
     "is not before the workload's end"),
    ({"workload": {"model": "vgg16", "inferences": 3}, "step": [{"at_s": 1, "input_size": [160, 160]}]},
     "step 1.input_size: vgg16 takes only 224x224"),
    ({"step": [{"at_s": 1, "input_size": [160]}]}, "step 1.input_size must be [height, width]"),
    ({"workload": {"model": "mobilenet_v2", "inferences": 3, "input_size": [8, 8]}},
     "workload.input_size: input size 8x8"),
])
def test_bad_scenarios_say_what_is_wrong(parts: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse(table(**parts))
    assert message in str(caught.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \"x\"\nprofile = \"5g-split-ai\"\n[workload\n")
    with pytest.raises(ScenarioError, match="broken.toml: not valid TOML"):
        load(broken)
    with pytest.raises(ScenarioError, match="no built-in scenario named 'nope'"):
        load("nope")
    relative = tmp_path / "rel.toml"
    (tmp_path / "slow.tput").write_text("# interval_ms: 500\n3\n0\n7\n")
    relative.write_text("name = \"rel\"\nprofile = \"5g-split-ai\"\n[workload]\nmodel = \"mobilenet_v2\"\n"
                        "inferences = 2\n[[step]]\nat_s = 1\nuplink.trace = \"slow.tput\"\n")
    trace = load(relative).events[0].profile.uplink.trace
    assert trace is not None and trace.path == str((tmp_path / "slow.tput").resolve())


def test_cli_check_and_list() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["scenario", "list"])
    assert listed.exit_code == 0 and "drop-144-to-5:" in listed.output
    checked = runner.invoke(app, ["scenario", "check", "outage-3s"])
    assert checked.exit_code == 0, checked.output
    assert "outage_start" in checked.output and "(uplink 0.0 Mbit/s)" in checked.output
    bad = runner.invoke(app, ["scenario", "check", "/nonexistent/x.toml"])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_a_node_builds_a_bounded_number_of_input_sizes() -> None:
    from splitbed.nodes.errors import ConfigurationError
    from splitbed.nodes.runner import MAX_INPUT_SIZES, ModelRunner

    runner = ModelRunner(weights="random:0")
    for i in range(MAX_INPUT_SIZES):  # stand-ins for builds already made: the cap is checked before building
        runner._loaded[("mobilenet_v2", (64 + i, 64))] = object()
    with pytest.raises(ConfigurationError, match="already built at 8 other input sizes"):
        runner.load("mobilenet_v2", (200, 200))
    with pytest.raises(ConfigurationError, match="vgg16 takes only 224x224"):
        runner.spec("vgg16", [160, 160])
