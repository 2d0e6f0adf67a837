"""The plugin's options as a user's suite meets them (pytester: an inner pytest run in a subprocess): namespaced
names, short aliases only where free, typos refused as usage errors naming the valid values, and a filter that
selects nothing by default but would with --full says so instead of passing silently."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE_TEST = """
import pytest

@pytest.mark.suite("correctness")
def test_case(suite_case):
    assert suite_case.model
"""


def test_unknown_model_and_profile_are_usage_errors_naming_the_valid_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE_TEST)
    model = pytester.runpytest_subprocess("--model", "vgg17")
    assert model.ret == pytest.ExitCode.USAGE_ERROR
    model.stderr.fnmatch_lines(["*--splitbed-model 'vgg17': no such model; registered: mobilenet_v2, resnet50, vgg16*"])
    profile = pytester.runpytest_subprocess("--splitbed-profile", "ltee")
    assert profile.ret == pytest.ExitCode.USAGE_ERROR
    profile.stderr.fnmatch_lines(["*--splitbed-profile 'ltee': no such link profile; built-in: *lte*"])
    weights = pytester.runpytest_subprocess("--weights", "random:x")
    assert weights.ret == pytest.ExitCode.USAGE_ERROR
    weights.stderr.fnmatch_lines(["*--splitbed-weights: *seed after 'random:' must be an integer*"])


def test_options_are_namespaced_and_profile_has_no_short_form(pytester: pytest.Pytester) -> None:
    shown = pytester.runpytest_subprocess("--help")
    text = shown.stdout.str()
    for name in ("--splitbed-model", "--splitbed-profile", "--splitbed-backend", "--splitbed-full",
                 "--splitbed-weights", "--splitbed-results-dir", "--splitbed-keep-results", "--link-profile"):
        assert name in text, name
    assert "--profile " not in text and "--profile=" not in text  # pytest-profiling's name stays free


def test_a_short_alias_another_plugin_took_is_left_to_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(other_plugin="def pytest_addoption(parser):\n"
                                     "    parser.addoption('--model', default='theirs')\n",
                        test_suite=SUITE_TEST)
    done = pytester.runpytest_subprocess("-p", "other_plugin", "--splitbed-model", "mobilenet_v2", "--co", "-q")
    assert done.ret == pytest.ExitCode.OK, done.stderr.str()
    done.stdout.fnmatch_lines(["*test_case[[]mobilenet_v2-*"])


def test_a_filter_that_selects_nothing_by_default_says_full_would(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE_TEST)
    default = pytester.runpytest_subprocess("--model", "resnet50", "-rs")
    default.stdout.fnmatch_lines([
        "*splitbed: *test_case: --splitbed-model resnet50 selects no case of the default correctness matrix; "
        "* case(s) of the full matrix match: add --splitbed-full*",
        "*SKIPPED*--splitbed-model resnet50 selects no case of the default correctness matrix*"])
    assert "NOTSET" not in default.stdout.str()
    full = pytester.runpytest_subprocess("--model", "resnet50", "--full", "--co", "-q")
    full.stdout.fnmatch_lines(["*test_case[[]resnet50-*"])
    assert "selects no case" not in full.stdout.str()
    keyword = pytester.runpytest_subprocess("-k", "resnet50 and lte", "--co", "-q")
    keyword.stdout.fnmatch_lines(["*splitbed: -k 'resnet50 and lte' selects no case of the default matrices; "
                                  "* case(s) of the full matrix match (e.g. *resnet50-*-lte-*): add --splitbed-full"])
