"""`-p examples` names the model's example partitions (VGG16's six); `seed`, its old name (which read like the
`random:SEED` of --weights), still selects them, with one note on the command line."""

from __future__ import annotations

import warnings

import pytest

from splitbed.cli import main
from splitbed.sweep.plan import DEFAULT_PARTITIONS, DeprecatedNameWarning, resolve_partitions

SIX = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1", "fc1"]


def test_examples_is_the_default_and_seed_still_works_with_a_note() -> None:
    assert DEFAULT_PARTITIONS == ("examples",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_partitions("vgg16", ["examples"]) == SIX
    with pytest.warns(DeprecatedNameWarning, match="-p seed is now -p examples"):
        assert resolve_partitions("vgg16", ["seed"]) == SIX


def test_the_command_line_says_the_note_once(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    assert main(["sweep", "-p", "seed", "-m", "vgg16", "-m", "resnet50", "--dry-run", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == ["splitbed: note: -p seed is now -p examples (the model's example partitions); "
                                "'seed' still works for now"]
