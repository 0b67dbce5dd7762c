"""Components built for real, before any data is read: import errors inside a user's module, constructors that
reject their arguments and networks of the wrong output shape all fail naming the config key."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import ROOT, TINY_DATA, read_json, train

from scopeml.config import ConfigError

FRONTEND = yaml.safe_load((ROOT / "conf" / "frontend" / "logmel.yaml").read_text())


def build(network: dict, n_classes: int = 3):
    from scopeml.models import build_classifier

    return build_classifier(FRONTEND, network, n_classes, 16000, 1.0)


def test_a_network_with_the_wrong_output_width_is_named():
    with pytest.raises(
        ConfigError, match=r"model: user_parts.WrongWidth returns \(2, 5\) for a batch of 2 clips; expected \(2, 3\)"
    ):
        build({"_target_": "user_parts.WrongWidth"})


def test_runtime_values_reach_the_users_network():
    model = build({"_target_": "user_parts.Fine", "hidden": 6}, n_classes=7)
    assert model[1].head[2].out_features == 7 and model[1].head[0].in_features == FRONTEND["n_mels"]


def test_an_import_error_inside_the_users_module_names_the_key_and_the_module():
    with pytest.raises(ConfigError) as info:
        build({"_target_": "user_broken_module.Net"})
    assert info.value.problems == [
        "model._target_: cannot import 'user_broken_module.Net': importing module 'user_broken_module' "
        "failed: ModuleNotFoundError: No module named 'not_installed_dependency'"
    ]


def test_a_constructor_that_rejects_its_arguments_is_named():
    with pytest.raises(
        ConfigError, match=r"model: building scopeml.models.cnn.SmallCnn failed: ValueError: channels needs"
    ):
        build({"_target_": "scopeml.models.cnn.SmallCnn", "channels": [], "dropout": 0.1})


@pytest.mark.slow
def test_scopeml_train_fails_at_build_before_any_data(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    monkeypatch.setenv("SCOPEML_CACHE_DIR", str(tmp_path / "cache"))  # an empty cache: nothing may be written to it
    run = tmp_path / "run"
    proc = train(
        run, *TINY_DATA, "tracker=none", "model._target_=user_parts.WrongWidth", "~model.channels", "~model.dropout"
    )
    assert proc.returncode != 0
    assert "model: user_parts.WrongWidth returns (2, 5)" in proc.stderr, proc.stderr[-2000:]
    status = read_json(run / "status.json")
    assert status["status"] == "failed" and status["stage"] == "build"
    assert not (tmp_path / "cache").exists()  # no clip was synthesized or read
    assert json.loads((run / "provenance.json").read_text())  # the run folder still explains itself
