"""The config tree composes, and bad configs fail fast, naming every bad key."""

from __future__ import annotations

import time

import pytest
from conftest import ROOT, run_cli

from scopeml.config import ConfigError, load

CONF = ROOT / "conf"
# Options that only make sense together with another choice.
COMPANIONS = {
    "data=fsdd": ["scoping=digits"],
    "data=fsdd_synth_mix": ["scoping=digits"],
    "data=manifest": ["data.source.manifest=x.csv"],
    "data=source": ["data.source={_target_:tiny_source.Tones}"],
    "data/labels=digits": ["scoping=digits"],
    "data/labels=commands_unknown": ["scoping=keywords_unknown", "data=speech_commands"],
    "scoping=keywords_unknown": ["data=speech_commands", "data/labels=commands_unknown"],
}


def compose_config(*overrides: str):
    from scopeml.config.paths import compose

    return compose("config", list(overrides))


def compose_config_named(name: str):
    from scopeml.config.paths import compose

    return compose(name, [])


def all_options():
    """Every YAML file under conf/ (nested groups such as data/augment too), as a GROUP=OPTION override."""
    for path in sorted(CONF.rglob("*.yaml")):
        group = path.parent.relative_to(CONF).as_posix()
        if group not in (".", "hydra/help", "simulate", "lifecycle"):  # scenario and lifecycle files: checked below
            yield f"{group}={path.stem}"


@pytest.mark.parametrize("option", list(all_options()))
def test_every_config_file_composes_and_validates(option):
    cfg = compose_config(option, *COMPANIONS.get(option, []))
    config = load(cfg)
    group, name = option.split("=")
    if group == "data":  # every data set is a source class, except a mixture of them
        from scopeml.data import recipe_name

        assert recipe_name(config.data) == {"fsdd_synth_mix": "mixture", "source": "tones"}.get(name, name)
    if group == "data/augment":
        assert config.data.augment.enabled == (name != "none")


def test_the_default_config_is_the_documented_one():
    config = load(compose_config())
    assert config.data.source["_target_"] == "scopeml.data.synth.SynthKeywords"
    assert config.tracker.kind == "wandb" and config.tracker.mode == "offline"
    assert config.scoping.primary_metric in config.scoping.targets
    assert config.data.source["words"] == config.scoping.classes  # the recipe speaks exactly the scoped classes
    assert "yes" in config.scoping.classes  # YAML 1.1 would have made this `True`
    # the field's 12-class form: ten commands, every other word `unknown`, no speech `silence`
    assert len(config.scoping.classes) == 12 and config.scoping.classes[-2:] == ["unknown", "silence"]
    assert config.scoping.targets["false_accept_rate"].max is not None


BAD_OVERRIDES = [
    # (override, the key the message must name, a phrase it must contain)
    ("hparams.lr=fast", "hparams.lr", "expected float"),
    ("hparams.batch_size=1.5", "hparams.batch_size", "expected int"),
    ("hparams.max_epochs=0", "hparams.max_epochs", "must be >= 1"),
    ("hparams.optimizer._target_=torch.optim.Adamax2", "hparams.optimizer._target_", "has no attribute 'Adamax2'"),
    ("hparams.optimizer._partial_=false", "hparams.optimizer._partial_", "must be true"),
    ("+hparams.optimizer.lrr=0.1", "hparams.optimizer.lrr", "did you mean 'lr'"),
    (
        "+hparams.loss.label_smothing=0.1",
        "hparams.loss.label_smothing",
        "unknown keyword for torch.nn.CrossEntropyLoss",
    ),
    ("+hparams.learning_rate=0.1", "hparams.learning_rate", "unknown key"),
    ("model.channels=eight", "model.channels", "expected list"),
    ("model.dropout=high", "model.dropout", "expected float"),
    ("+model.arch=transformer", "model.arch", "unknown keyword for scopeml.models.cnn.SmallCnn"),
    ("~model.channels", "model.channels", "required argument of scopeml.models.cnn.SmallCnn is missing"),
    ("model._target_=nopkg.nets.Net", "model._target_", "no module named 'nopkg'"),
    ("+model.n_classes=3", "model.n_classes", "set by scopeml at build time"),
    ("frontend.n_mels=many", "frontend.n_mels", "expected int"),
    (
        "+callbacks.swa={_target_:lightning.pytorch.callbacks.StochasticWeightAveraging}",
        "callbacks.swa.swa_lrs",
        "required argument",
    ),
    ("data.recipe=sourc", "data.recipe", "did you mean 'source'"),
    # A built-in data set is an ordinary `_target_` source: its keys are checked against its constructor.
    ("+data.source.pitchs=[40]", "data.source.pitchs", "did you mean 'pitches'"),
    ("data.source.rates=fast", "data.source.rates", "expected list"),
    ("data.source._target_=scopeml.data.synth.Synth", "data.source._target_", "has no attribute 'Synth'"),
    ("data.split.val_fraction=1.2", "data.split.val_fraction", "between 0 and 1"),
    ("data.preprocess.sample_rate=100", "data.preprocess.sample_rate", "between 4000 and 48000"),
    ("data.preprocess.trim.method=spectral", "data.preprocess.trim.method", "one of"),
    ("scoping.primary_metric=auc", "scoping.primary_metric", "unknown metric"),
    ("scoping.classes=[only_one]", "scoping.classes", "at least two"),
    # the default's false-accept target is about clips that are not keywords: a scoping without any cannot judge it
    ("scoping.classes=[yes,no]", "scoping.targets.false_accept_rate", "needs a class that is not a keyword"),
    ("+scoping.targets.f2={min:0.5}", "scoping.targets.f2", "unknown metric"),
    ("scoping.targets.accuracy.min=null", "scoping.targets.accuracy", "exactly one of min or max"),
    ("tracker.kind=mlflow", "tracker.kind", "one of"),
    ("tracker.mode=sometimes", "tracker.mode", "one of"),
    ("trainer.devices=1.5", "trainer.devices", "expected int or str"),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches", "batch count"),
    ("seed=abc", "seed", "expected int"),
    ("scoping.name=???", "scoping.name", "required value is missing"),
]


@pytest.mark.parametrize("override,key,phrase", BAD_OVERRIDES, ids=[b[0] for b in BAD_OVERRIDES])
def test_bad_override_is_rejected_naming_the_key(override, key, phrase):
    with pytest.raises(ConfigError) as info:
        load(compose_config(override))
    line = next((p for p in info.value.problems if p.startswith(key + ":") or p.startswith(key + " ")), None)
    assert line is not None, f"{key} not named in {info.value.problems}"
    assert phrase in line


def test_all_bad_keys_are_reported_at_once_from_the_cli_before_any_work(tmp_path):
    # Cross-field checks run on every node that is well typed, so these all surface in one pass.
    bad = [
        "hparams.lr=fast",
        "hparams.batch_size=1.5",
        "scoping.primary_metric=auc",
        "trainer.limit_train_batches=0",
        "model.channels=[8,x]",
        "data.recipe=sourc",
        "tracker.kind=mlflow",
    ]
    started = time.perf_counter()
    proc = run_cli("scopeml.cli.train", f"hydra.run.dir={tmp_path / 'run'}", *bad, fresh=True)  # the start counts
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2
    for key in (
        "hparams.lr",
        "hparams.batch_size",
        "scoping.primary_metric",
        "trainer.limit_train_batches",
        "model.channels[1]",
        "data.recipe",
        "tracker.kind",
    ):
        assert key in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # Failed before any work: nothing trained, nothing cached, and the run says it failed.
    run = tmp_path / "run"
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()
    assert '"failed"' in (run / "status.json").read_text()
    assert elapsed < 10, f"config check took {elapsed:.1f}s including interpreter start"


def test_unknown_key_without_plus_is_named_by_hydra(tmp_path):
    proc = run_cli("scopeml.cli.train", f"hydra.run.dir={tmp_path}", "hparams.lrr=0.1")
    assert proc.returncode == 2  # a bad config, though Hydra is the one that finds it
    assert "hparams.lrr" in proc.stderr


def test_a_broken_interpolation_names_its_key():
    with pytest.raises(ConfigError) as info:
        load(compose_config("data.cache_dir=${nope.missing}"))
    assert any(p.startswith("data.cache_dir") for p in info.value.problems)


def test_in_process_check_is_fast():
    cfg = compose_config("hparams.lr=fast", "model.dropout=2")
    started = time.perf_counter()
    with pytest.raises(ConfigError):
        load(cfg)
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize("scenario", sorted(p.stem for p in (CONF / "simulate").glob("*.yaml")))
def test_every_simulation_scenario_validates(scenario):
    from scopeml.monitoring.simulate import load_scenario

    assert load_scenario(scenario).name == scenario


def test_second_entry_points_compose(tmp_path):
    for name in ("data_report", "monitor_report"):
        assert load(compose_config_named(name)).monitor.chunk_size == 200


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "lifecycle").glob("*.yaml")))
def test_every_lifecycle_config_validates(name):
    from scopeml.lifecycle.config import load_lifecycle

    assert load_lifecycle(name).sweep
