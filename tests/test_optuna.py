"""scopeml's Optuna sweeper (scopeml.hpo, hydra/sweeper=scopeml_optuna): shared studies, pruning, start-up checks.

The two-worker test plants a bad region in the search space: hparams.lr=1e-7 leaves the model at chance
(macro-F1 1/3 on two balanced classes: it answers one class) while lr=3e-4 is above chance after the first epoch on
this data. Training is deterministic (seeded, one thread), so every good trial reports the same first-epoch score
and the MedianPruner's verdict does not depend on timing: with sampler seed 16 trials 0-2 draw the good lr, so a
bad trial numbered 3 or more always finds at least two completed good trials (each worker finishes its trial
before asking for the next; at most one other trial is running) and is pruned after epoch 0.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from conftest import ROOT, read_json, refused_sweep, run_cli

GOOD_LR, BAD_LR = 0.0003, 1e-7
# Two balanced words, 8 voices: 2 speakers (24 clips) validate; no schedule, so the first epoch already learns.
PLANTED = [
    "scoping=keywords10",
    "scoping.classes=[yes,no]",
    "scoping.targets.accuracy.min=0.0",
    "scoping.targets.macro_f1.min=0.0",
    "scoping.targets.min_class_recall.min=0.0",
    "++data.source.voices=[en+m1,en+f1,en+m3,en+f4,en+m7,en+m2,en+m4,en+m6]",
    "data.source.pitches=[30,50,70]",
    "data.split.val_fraction=0.25",
    "hparams.max_epochs=2",
    "hparams.batch_size=8",
    "hparams.scheduler=null",
    "trainer.num_threads=1",
    "trainer.progress_bar=none",
    "tracker=none",
]
SEARCH = [
    "hparams_search=optuna",
    "hydra.sweeper.params=null",  # the preset's space out; the planted one from the command line
    f"hparams.lr=choice({GOOD_LR},{BAD_LR})",
    "hydra.sweeper.sampler.seed=16",
    "hydra.sweeper.pruner.n_startup_trials=2",
]


def journal(path: Path) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


@pytest.fixture(scope="module")
def planted_data():
    """Build the planted data set's cache once, so two workers starting together do not both synthesize it."""
    from scopeml.config import load
    from scopeml.config.paths import compose
    from scopeml.data import build_dataset

    cfg = load(compose("config", PLANTED))
    build_dataset(cfg.data, cfg.scoping.classes, progress=False)


def test_search_space_parsing_and_per_trial_seeds():
    from scopeml import hpo

    # spelled out in scopeml.training.pruning, which does not import scopeml.hpo (optuna) into every training run
    assert f'TRIAL_ENV = "{hpo.TRIAL_ENV}"' in (ROOT / "src/scopeml/training/pruning.py").read_text()
    space, fixed = hpo.parse_space(
        {"hparams.lr": "tag(log, interval(1e-4, 1e-2))", "hparams.batch_size": "interval(16, 128)", "seed": 3},
        ["model=choice(cnn,dscnn)", "hparams.max_epochs=range(2,7,2)", "tracker=none"],
    )
    D = optuna.distributions
    assert space == {
        "hparams.lr": D.FloatDistribution(1e-4, 1e-2, log=True),
        "hparams.batch_size": D.IntDistribution(16, 128),
        "model": D.CategoricalDistribution(["cnn", "dscnn"]),
        "hparams.max_epochs": D.IntDistribution(2, 6, step=2),
    }
    assert fixed == ["seed=3", "tracker=none"]
    assert hpo.format_override("data.source.root", "/a b/c,d") == "data.source.root='/a b/c,d'"
    assert hpo.format_override("hparams.lr", 1e-07) == "hparams.lr=1e-07"
    with pytest.raises(hpo.SearchError, match="hydra.sweeper.params.hparams.lr"):
        hpo.parse_space({"hparams.lr": "interval(0.1, 0.01)"}, [])

    def draws(seed: int, space: dict) -> list:
        sampler = hpo.build_sampler({"_target_": "optuna.samplers.TPESampler", "seed": seed, "n_startup_trials": 10})
        study = optuna.create_study(sampler=sampler, direction="maximize")
        out = []
        for _ in range(8):
            trial = study.ask(space)
            out.append(dict(trial.params))
            study.tell(trial, 0.5)
        return out

    assert draws(0, space) == draws(0, space) != draws(1, space)  # one process's sweep is reproducible
    # the planted test's premise: with seed 16, trials 0-2 draw the good lr and some later trial the bad one
    planted, _ = hpo.parse_space(None, [f"hparams.lr=choice({GOOD_LR},{BAD_LR})"])
    lrs = [d["hparams.lr"] for d in draws(16, planted)]
    assert lrs[:3] == [GOOD_LR] * 3 and BAD_LR in lrs[3:], lrs


@pytest.mark.slow
def test_two_workers_share_a_journal_study_and_prune_the_planted_bad_region(tmp_path, planted_data):
    from scopeml import hpo

    store = tmp_path / "study.journal"
    sweeps = [tmp_path / "worker0", tmp_path / "worker1"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            hpo.worker_command(store, 4, sweep, [*SEARCH, "hydra.sweeper.study_name=planted", *PLANTED]),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for sweep in sweeps
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    print(f"\ntwo workers, 8 trials: {time.perf_counter() - started:.1f} s")

    study = optuna.load_study(study_name="planted", storage=journal(store))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(8))
    # each worker ran its own n_trials, trial numbers from the shared study, folders named by them
    mine = [yaml.safe_load((s / "optimization_results.yaml").read_text())["this_worker"] for s in sweeps]
    assert [len(m) for m in mine] == [4, 4] and set(mine[0]).isdisjoint(mine[1])
    for sweep, numbers in zip(sweeps, mine):
        assert sorted(int(p.name) for p in sweep.iterdir() if p.name.isdigit()) == sorted(numbers)

    states = {t.number: t.state for t in trials}
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert optuna.trial.TrialState.FAIL not in states.values()
    assert pruned, {t.number: (t.params, t.state.name) for t in trials}
    for t in trials:
        bad = t.params["hparams.lr"] == BAD_LR
        if bad and t.number >= 3:
            assert t.state == optuna.trial.TrialState.PRUNED, (t.number, t.intermediate_values)
        if not bad:
            assert t.state == optuna.trial.TrialState.COMPLETE and t.intermediate_values[0] > 0.34
    for t in pruned:  # stopped after its first epoch, and its run folder says so
        assert t.params["hparams.lr"] == BAD_LR and list(t.intermediate_values) == [0]
        status = read_json(Path(t.user_attrs["run_dir"]) / "status.json")
        assert status["status"] == "pruned" and status["pruned"]["epoch"] == 0, status
        assert status["optuna"] == {"study": "planted", "storage": str(store), "trial": t.number}
        assert not (Path(t.user_attrs["run_dir"]) / "metrics.json").exists()
    summary = pd.concat([pd.read_csv(s / "sweep_summary.csv") for s in sweeps])
    assert sorted(summary.loc[summary["status"] == "pruned", "job"]) == sorted(t.number for t in pruned)

    # the study's best trial is what scopeml-select picks on validation across both workers' folders
    sel = run_cli("scopeml.cli.select", *map(str, sweeps))
    assert sel.returncode == 0, sel.stdout + sel.stderr
    selection = read_json(sweeps[0] / "selection.json")
    best = study.best_trial
    assert selection["selected"]["value"] == pytest.approx(best.value)
    chosen = Path(selection["selected"]["run_dir"])
    overrides = yaml.safe_load((chosen / ".hydra" / "overrides.yaml").read_text())
    assert f"hparams.lr={best.params['hparams.lr']}" in overrides
    tied = {t.user_attrs["run_dir"] for t in trials if t.value == best.value and t.state.name == "COMPLETE"}
    assert str(chosen) in tied  # the same folder, or one with the same params and value (identical trials tie)
    assert any("pruned by the Optuna sweeper" in r for j in selection["rejected"] for r in j["reasons"])


def test_a_study_that_holds_another_search_space_is_refused_before_training(tmp_path):
    from scopeml import hpo

    store = tmp_path / "study.journal"
    taken = optuna.create_study(study_name="kws", storage=journal(store), direction="maximize")
    other, _ = hpo.parse_space(None, ["hparams.lr=interval(0.1, 0.5)"])
    taken.set_user_attr(hpo.SPACE_ATTR, hpo.space_to_json(other))
    stderr = refused_sweep(
        tmp_path / "sweep",
        "hparams_search=optuna",
        f"hydra.sweeper.storage={store}",
        "hydra.sweeper.study_name=kws",
        "tracker=none",
    )
    assert "hydra.sweeper.params" in stderr and "hydra.sweeper.study_name" in stderr, stderr
    assert "hparams.lr: interval(0.1, 0.5) in the study, log interval(0.0005, 0.01) here" in stderr
    assert len(taken.trials) == 0


@pytest.mark.parametrize(
    "storage",
    ["postgresql://nobody@127.0.0.1:1/x", "foo://x", "{tmp}/missing/study.journal"],
    ids=["unreachable-postgres", "unknown-scheme", "missing-folder"],
)
def test_a_bad_storage_is_refused_at_start_up_naming_the_setting(tmp_path, storage):
    stderr = refused_sweep(
        tmp_path / "sweep",
        "hparams_search=optuna",
        f"hydra.sweeper.storage={storage.format(tmp=tmp_path)}",
        "tracker=none",
    )
    assert "scopeml-train: error: the sweep was not started: hydra.sweeper.storage:" in stderr, stderr


def test_a_bad_searched_value_is_refused_before_the_first_trial(tmp_path):
    """Every choice of a searched key is checked up front (the command line's replacing the preset's)."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "scopeml.cli.train",
        "-m",
        "hparams_search=optuna",
        "model.dropout=choice(0.0,0.5,wrong)",
        f"hydra.sweep.dir={sweep}",
        "tracker=none",
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "model.dropout: expected float" in proc.stderr and "model.dropout=wrong" in proc.stderr, proc.stderr
    assert not sweep.exists()


def test_a_searched_key_fixed_on_the_command_line_is_checked_at_the_value_that_runs(tmp_path):
    """hparams.batch_size is searched by the preset; fixed on the command line, every trial runs with that value,
    so that value is the one checked (not the preset's choices, which no trial uses)."""
    stderr = refused_sweep(tmp_path / "sweep", "hparams_search=optuna", "hparams.batch_size=0", "tracker=none")
    assert "hparams.batch_size" in stderr and "hparams.batch_size=0" in stderr, stderr


@pytest.mark.parametrize(
    ("settings", "gpus", "several"),
    [
        ({}, 0, False),
        ({"devices": 2}, 0, True),
        ({"devices": -1}, 0, True),
        ({"devices": "0,1"}, 2, True),
        ({"strategy": "ddp"}, 0, True),
        ({"num_nodes": 2}, 0, True),
        ({"devices": "auto"}, 4, False),  # accelerator cpu: Lightning runs one process
        ({"accelerator": "gpu", "devices": "auto"}, 1, False),
        ({"accelerator": "gpu", "devices": "auto"}, 2, True),  # one process per visible GPU: DDP
        ({"accelerator": "auto", "devices": "auto"}, 2, True),
    ],
)
def test_a_trial_knows_when_its_trainer_runs_several_processes(monkeypatch, settings, gpus, several):
    """A DDP trial is not pruned (its ranks would each report), so "several processes" must be decided right."""
    from scopeml.config.schema import TrainerConfig
    from scopeml.training import pruning

    monkeypatch.setattr(pruning, "_visible_gpus", lambda: gpus)
    assert pruning.distributed(TrainerConfig(**settings)) is several


def test_a_worker_stops_when_another_claims_the_study_for_another_space_mid_sweep(tmp_path):
    """Two workers that start together on a new study can both find it empty; the one whose claim is overwritten
    stops before its next batch of trials, with what it did recorded, instead of mixing two spaces in one study."""
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from scopeml import hpo

    store = tmp_path / "study.journal"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}, "scoping": {}})
    search = hpo.OptunaSearch(config, storage=str(store), study_name="race", n_trials=3, direction="maximize")
    other, _ = hpo.parse_space(None, ["hparams.lr=interval(0.1, 0.5)"])

    class OtherWorkerWritesAfterTheFirstTrial:
        launched = 0

        def launch(self, overrides, initial_job_idx):
            self.launched += 1
            optuna.load_study(study_name="race", storage=hpo.open_storage(str(store))).set_user_attr(
                hpo.SPACE_ATTR, hpo.space_to_json(other)
            )
            ret = JobReturn(overrides=overrides[0], status=JobStatus.COMPLETED)
            ret._return_value = 0.5
            return [ret]

    launcher = OtherWorkerWritesAfterTheFirstTrial()
    with pytest.raises(hpo.SearchChanged, match="after 1 trial.*hydra.sweeper.params.*different search space"):
        search.run(["hparams.lr=interval(0.001, 0.01)"], launcher)
    assert launcher.launched == 1
    study = optuna.load_study(study_name="race", storage=hpo.open_storage(str(store)))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    assert yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())["best_value"] == 0.5


def test_a_sampler_or_pruner_that_is_not_optunas_is_refused_and_none_means_tpe():
    from scopeml import hpo

    with pytest.raises(hpo.SearchError, match="hydra.sweeper.sampler: .* is not an Optuna sampler"):
        hpo.build_sampler({"_target_": "collections.OrderedDict"})
    with pytest.raises(hpo.SearchError, match="hydra.sweeper.pruner: .* is not an Optuna pruner"):
        hpo.build_pruner({"_target_": "collections.OrderedDict"})
    assert isinstance(hpo.build_sampler(None), optuna.samplers.TPESampler)
