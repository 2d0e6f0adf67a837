"""Device profiles: the built-ins load and cite a source for every figure, derived figures follow the project's
own MAC counts, docs/DEVICES.md carries the generated table, and bad files get one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splitbed.cli import app, main
from splitbed.commands.devices import MODELS, devices_markdown
from splitbed.devices import (
    DEFAULT_EDGE,
    DEFAULT_UE,
    DeviceError,
    DeviceProfile,
    builtin_names,
    builtin_profiles,
    load,
)
from splitbed.models import registry

DOC = Path(__file__).resolve().parents[3] / "docs" / "DEVICES.md"

PHONE = """
name = "my-phone"
role = "ue"
description = "a test phone"
source = "measured"
precision = "fp32"

[latency.vgg16]
fp32_ms = 500.0
source = "benchmark_model"

[power]
compute_w = 3.0
compute_source = "meter"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(text)
    return path


def test_builtins_cover_the_roles_and_every_registered_model() -> None:
    names = builtin_names()
    assert names[0] == "host" and {"phone-midrange", "phone-flagship", "edge-l4"} <= set(names)
    assert DEFAULT_UE == "phone-midrange" and DEFAULT_EDGE == "host"
    assert set(MODELS) == set(registry.names())
    for profile in builtin_profiles():
        if profile.is_host:
            assert profile.role == "any" and profile.compute_power is None
            continue
        assert profile.role in ("ue", "edge") and profile.compute_power is not None
        assert profile.compute_power.source.strip()
        for model in registry.names():
            assert profile.full_model_ms(model) > 0
            assert profile.latencies[model].source.strip()
        if profile.role == "ue":
            assert profile.idle_power is not None and profile.idle_power.source.strip()
            assert set(profile.radio) == {"lte", "nr-mmwave"} and "nr-sub6" in profile.radio_unavailable
            assert all(r.source.strip() for r in profile.radio.values())


def test_the_phones_are_slower_in_the_right_order() -> None:
    mid, flagship = load("phone-midrange"), load("phone-flagship")
    for model in registry.names():
        assert mid.full_model_ms(model) > flagship.full_model_ms(model)
    # the published table's order: VGG16 > ResNet50 > MobileNetV2 on every device
    for profile in (mid, flagship, load("edge-l4")):
        assert profile.full_model_ms("vgg16") > profile.full_model_ms("resnet50") > profile.full_model_ms(
            "mobilenet_v2")


@pytest.mark.filterwarnings("ignore")
def test_derived_latencies_use_the_projects_own_mac_counts() -> None:
    from splitbed.models.summary import layer_rows

    macs = {m: sum(r["macs"] for r in layer_rows(m)) for m in registry.names()}
    derived = 0
    for profile in builtin_profiles():
        for model, latency in profile.latencies.items():
            if latency.derived is None:
                continue
            derived += 1
            assert latency.derived.macs == macs[model] and latency.derived.from_macs == macs[latency.derived.from_model]
            published = profile.latencies[latency.derived.from_model].ms(latency.derived.precision)
            assert latency.derived.from_ms == published
            assert latency.ms(latency.derived.precision) == pytest.approx(published * macs[model] / macs[
                latency.derived.from_model], rel=1e-3)
    assert derived == 2  # edge-l4: VGG16 and MobileNetV2 from MLPerf's ResNet-50


def test_docs_table_is_generated_from_the_files() -> None:
    text = DOC.read_text()
    begin, end = "<!-- BEGIN splitbed devices --markdown -->\n", "<!-- END splitbed devices --markdown -->"
    table = text[text.index(begin) + len(begin):text.index(end)]
    assert table == devices_markdown(builtin_profiles()), "regenerate with: splitbed devices --markdown"


def test_devices_command_lists_built_ins_with_sources_and_json() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["devices"])  # 80 columns: the sources go first, and a line says so
    assert result.exit_code == 0, result.output
    for name in builtin_names():
        assert name in result.output
    assert max(map(len, result.output.splitlines())) <= 80 and "--wide" in result.output
    result = runner.invoke(app, ["devices", "--wide"])
    assert "ncnn" in result.output and "MLPerf" in result.output
    result = runner.invoke(app, ["devices", "--json"])
    data = json.loads(result.output)
    assert [d["name"] for d in data] == builtin_names()
    assert data[1]["latencies"]["vgg16"]["derived"]["factor"] == pytest.approx(15470264320 / 3857973248)
    assert runner.invoke(app, ["devices", "--markdown"]).output == devices_markdown(builtin_profiles())


def test_a_users_file_loads_by_path(tmp_path: Path) -> None:
    profile = load(write(tmp_path, PHONE))
    assert profile.name == "my-phone" and profile.full_model_ms("vgg16") == 500.0
    with pytest.raises(DeviceError, match="no fp32 latency for model 'resnet50'"):
        profile.full_model_ms("resnet50")
    assert profile.radio_for("lte") == (None, "device 'my-phone' has no radio model for lte")
    assert profile.radio_for("wired")[0] is None and profile.radio_for(None)[1].startswith("the link profile states")


@pytest.mark.parametrize(("change", "message"), [
    (("[latency.vgg16]\nfp32_ms = 500.0\n", "[latency.vgg16]\nfp32_ms = 500.0\nwatts = 3\n"), r"unknown key\(s\) 'watts'"),
    (('source = "benchmark_model"\n', ""), r"\[latency.vgg16\] needs a source"),
    (("fp32_ms = 500.0", "fp32_ms = -1"), "fp32_ms must be > 0"),
    (("fp32_ms = 500.0", "fp32_ms = 1e9"), "fp32_ms must be > 0 and <= 3.6e\\+06"),
    (('role = "ue"', 'role = "phone"'), "role is 'phone'"),
    (('precision = "fp32"', 'precision = "fp16"'), "precision is 'fp16'"),
    (("compute_w = 3.0\n", ""), r"\[power\] needs compute_w"),
    (('role = "ue"', 'role = "edge"'), None),  # a valid edge profile ...
    (("fp32_ms = 500.0", "fp32_ms = 500.0\nderived = { precision = \"fp32\", from_model = \"resnet50\", "
      "from_ms = 100.0, macs = 15470264320, from_macs = 3857973248 }"), "must be from_ms x macs / from_macs = 400.995"),
    (("[power]", "[radio.wifi]\nenergy_per_bit_nj = 1\nbase_power_mw = 1\nsource = \"x\"\n[power]"),
     "radio access must be one of"),
    (("[power]", "[radio.lte]\nenergy_per_bit_nj = 1\nsource = \"x\"\n[power]"), "needs base_power_mw"),
    (('name = "my-phone"', 'name = "My Phone"'), "name 'My Phone' must be"),
    (("fp32_ms = 500.0", "fp32_ms = 500.0 ]"), r"not valid TOML: .*line \d+, column \d+"),
])
def test_bad_files_get_one_clear_line(tmp_path: Path, change: tuple[str, str], message: str | None) -> None:
    text = PHONE.replace(*change, 1)
    assert text != PHONE
    if message is None:
        assert load(write(tmp_path, text)).role == "edge"
        return
    with pytest.raises(DeviceError, match=message) as caught:
        load(write(tmp_path, text))
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)


def test_radio_tables_only_on_a_ue_and_host_takes_no_figures(tmp_path: Path) -> None:
    edge = PHONE.replace('role = "ue"', 'role = "edge"') + '[radio.lte]\nunavailable = "no"\n'
    with pytest.raises(DeviceError, match="only a ue profile has"):
        load(write(tmp_path, edge))
    host_like = 'name = "h"\nrole = "any"\ndescription = "d"\nsource = "s"\nprecision = "fp32"\n'
    with pytest.raises(DeviceError, match="stands for the host"):
        load(write(tmp_path, host_like))


def test_unknown_names_and_roles_are_refused() -> None:
    with pytest.raises(DeviceError, match="neither a built-in device profile"):
        load("phone-ultra")
    with pytest.raises(DeviceError, match="is an edge profile; the UE node needs a UE profile"):
        load("edge-l4").check_role("ue")
    load("host").check_role("ue")
    load("host").check_role("edge")


def test_devices_command_refuses_a_bad_file_in_one_line_with_status_2(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", str(write(tmp_path, PHONE.replace("fp32_ms = 500.0", "")))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("splitbed devices: error: ") and "gives neither fp32_ms nor int8_ms" in err
    assert "; fix: " in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_to_dict_round_trips_the_figures() -> None:
    profile = load("phone-midrange")
    data = profile.to_dict()
    assert data["latencies"]["vgg16"]["fp32_ms"] == 564.84 and data["radio"]["lte"]["energy_per_bit_nj"] == 438.39
    again = DeviceProfile.from_dict({"name": data["name"], "role": data["role"], "description": data["description"],
                                     "source": data["source"], "precision": data["precision"],
                                     "latency": {m: {"fp32_ms": v["fp32_ms"], "source": v["source"]}
                                                 for m, v in data["latencies"].items()},
                                     "power": {"compute_w": 1.0, "compute_source": "x"}})
    assert again.full_model_ms("resnet50") == 178.77
