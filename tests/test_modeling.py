"""Modeling phase: resilient sweeps on real launchers, DDP, exact resume, error analysis, calibration, selection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, TINY_DATA, TINY_FIT, offline_run, read_json, run_cli, train

pytestmark = pytest.mark.slow
LOW_TARGETS = [
    "scoping.targets.accuracy.min=0.0",
    "scoping.targets.macro_f1.min=0.0",
    "scoping.targets.min_class_recall.min=0.0",
    "scoping.targets.keyword_recall.min=0.0",
    "scoping.targets.false_accept_rate.max=1.0",
]


@pytest.mark.parametrize("launcher", ["basic", "parallel"])
def test_sweep_records_a_failing_trial_and_goes_on(tmp_path, fsdd_layout, launcher):
    sweep = tmp_path / "sweep"
    extra = ["hydra/launcher=parallel", "trainer.num_threads=1"] if launcher == "parallel" else []
    proc = run_cli(
        "scopeml.cli.train",
        "-m",
        f"hydra.sweep.dir={sweep}",
        *extra,
        "experiment=fsdd_digits",
        "data.split.test_speakers=[cyd]",
        "data.split.val_speakers=[bob]",
        "hparams.max_epochs=1",
        "trainer.progress_bar=none",
        "tracker=wandb_offline" if launcher == "basic" else "tracker=none",
        f"data.source.root={tmp_path / 'missing'},{fsdd_layout}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(summary["status"]) == ["failed", "complete"]
    assert "does not exist" in summary.loc[0, "error"] and "data.source.root" in summary.loc[0, "overrides"]
    assert not np.isnan(summary.loc[1, "accuracy"])
    md = (sweep / "sweep_summary.md").read_text()
    assert "## Failed jobs" in md and "job 0" in md
    assert read_json(sweep / "0" / "status.json")["status"] == "failed" and not (sweep / "0" / "metrics.json").exists()
    if launcher == "basic":  # the summary is also a W&B table, grouped with the sweep's jobs
        (run_path,) = (sweep / "wandb").glob("offline-run-*")
        run = offline_run(run_path)
        assert run["group"] == sweep.name and run["summary"]["failed"] == 1


def test_bad_sweep_fails_before_the_first_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "scopeml.cli.train", "-m", f"hydra.sweep.dir={sweep}", *TINY_DATA, "hparams.lr=0.001,fast", "model=cnn,dscnn"
    )
    assert proc.returncode == 2
    assert "hparams.lr: expected float, got str 'fast'" in proc.stderr and "2 of 4 jobs" in proc.stderr
    assert not sweep.exists()
    proc = run_cli("scopeml.cli.train", "-m", f"hydra.sweep.dir={sweep}", *TINY_DATA, "hparams.lrr=0.1,0.2")
    assert proc.returncode == 2 and "hparams.lrr" in proc.stderr and not sweep.exists()


def test_a_nan_loss_fails_the_trial_with_a_clear_error():
    from conftest import composed

    from scopeml.training.module import KeywordSpotter

    cfg = composed("hparams.lr=0.1")
    module = KeywordSpotter(cfg["model"], cfg["frontend"], cfg["hparams"], ["a", "b"], 16000)
    batch = (torch.full((2, 16000), float("nan")), torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(FloatingPointError, match=r"diverged.*hparams.lr"):
        module.training_step(batch, 0)


def test_ddp_on_two_cpu_processes(tmp_path):
    run = tmp_path / "ddp"
    proc = train(run, "trainer=ddp_cpu", *TINY_DATA, *TINY_FIT, "tracker=wandb_offline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_json(run / "status.json")["status"] == "complete"
    assert (run / "train_ddp_process_1.log").exists()  # the second rank ran in its own process
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # only rank 0 tracks
    assert read_json(run / "metrics.json")["test"]["clips"] > 0


def test_killed_run_resumes_to_the_same_result(tmp_path):
    args = [
        *TINY_DATA,
        "hparams.max_epochs=5",
        "hparams.batch_size=8",
        "trainer.progress_bar=none",
        "tracker=none",
        "seed=3",
    ]
    reference = tmp_path / "uninterrupted"
    assert train(reference, *args).returncode == 0

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scopeml.cli.train", f"hydra.run.dir={run}", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let the checkpoint write finish; the kill still lands mid-training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), "training never wrote a checkpoint"
    assert read_json(run / "status.json")["status"] == "running" and not (run / "metrics.json").exists()

    resumed = train(run, *args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = read_json(reference / "metrics.json"), read_json(run / "metrics.json")
    assert a["test"] == b["test"] and a["val"] == b["val"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(reference / "predictions_test.parquet"), pd.read_parquet(run / "predictions_test.parquet")
    )


def test_resume_without_a_checkpoint_names_the_key(tmp_path):
    proc = subprocess.run(  # as conftest.train does, with Python listing each module it imports
        [sys.executable, "-X", "importtime", "-m", "scopeml.cli.train", f"hydra.run.dir={tmp_path / 'fresh'}"]
        + [*TINY_DATA, "resume=true", "tracker=none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    assert proc.returncode == 2 and "resume: no checkpoint at" in proc.stderr  # a bad config value: exit 2
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "scopeml.train" in imported and not {"torch", "lightning"} & imported  # failed before the heavy imports


def test_error_analysis_matches_the_predictions(tiny_run: Path):
    preds = pd.read_parquet(tiny_run / "predictions_test.parquet")
    classes = read_json(tiny_run / "metrics.json")["per_class_test"].keys()
    by_hand = pd.crosstab(preds["label"], preds["pred"]).reindex(
        index=list(classes), columns=list(classes), fill_value=0
    )
    saved = pd.read_csv(tiny_run / "errors" / "confusion_matrix.csv", index_col=0)
    np.testing.assert_array_equal(saved.to_numpy(), by_hand.to_numpy())
    for name in ("confusion_matrix.png", "per_class.csv", "slices.csv", "confused_pairs.csv", "worst_examples.csv"):
        assert (tiny_run / "errors" / name).exists(), name
    slices = pd.read_csv(tiny_run / "errors" / "slices.csv")
    assert {"speaker", "pitch"} & set(slices["slice"]) or "speaker" in set(slices["slice"])
    metrics = read_json(tiny_run / "metrics.json")
    assert "flagged_slices" in metrics["error_analysis"]
    worst = pd.read_csv(tiny_run / "errors" / "worst_examples.csv")
    wrong = preds[~preds["correct"]]
    if len(wrong):
        assert worst.iloc[0]["clip_id"] == wrong.sort_values("confidence", ascending=False).iloc[0]["clip_id"]


def test_calibration_is_reported_and_probabilities_are_the_calibrated_ones(tiny_run: Path):
    from scopeml.training.calibration import softmax

    metrics = read_json(tiny_run / "metrics.json")
    cal = metrics["calibration"]
    assert {"temperature", "ece_test_before", "ece_test_after", "note"} <= set(cal)
    assert (tiny_run / "calibration.png").exists()
    preds = pd.read_parquet(tiny_run / "predictions_test.parquet")
    probs = preds[[c for c in preds.columns if c.startswith("prob_")]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert softmax(np.log(probs + 1e-12)).shape == probs.shape


def test_select_picks_from_a_real_sweep_and_explains_rejects(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "scopeml.cli.train",
        "-m",
        f"hydra.sweep.dir={sweep}",
        *TINY_DATA,
        *TINY_FIT,
        *LOW_TARGETS,
        "tracker=none",
        "model=cnn,dscnn",
        "scoping.targets.model_size_mb.max=0.15",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sel = run_cli("scopeml.cli.select", str(sweep))
    assert sel.returncode == 0, sel.stdout + sel.stderr
    selection = read_json(sweep / "selection.json")
    assert selection["selected"]["run_dir"].endswith("/0")  # the CNN (0.145 MB); the DS-CNN is 0.155 MB
    (reject,) = selection["rejected"]
    assert any("model_size_mb" in r for r in reject["reasons"])
    assert Path(selection["selected"]["checkpoint"]).exists()


def test_optuna_search_runs_trials_and_summarizes(tmp_path):
    sweep = tmp_path / "optuna"
    proc = run_cli(
        "scopeml.cli.train",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}",
        *TINY_DATA,
        "hparams.max_epochs=1",
        "trainer.progress_bar=none",
        "tracker=none",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())  # the study's best so far
    assert results["this_worker"] == {0: "complete", 1: "complete"} and results["objective"] == "macro_f1"
    assert (sweep / "optuna.journal").exists()  # hydra.sweeper.storage null: the study lives in the sweep folder
    assert read_json(sweep / str(results["best_trial"]["number"]) / "metrics.json")["measured"]["macro_f1"] == (
        pytest.approx(results["best_value"])
    )
    assert read_json(sweep / "1" / "status.json")["optuna"]["trial"] == 1  # one folder per trial, named by number
    summary = pd.read_csv(sweep / "sweep_summary.csv")
    assert len(summary) == 2 and set(summary["status"]) == {"complete"}
    assert summary["overrides"].str.contains("hparams.lr").all()  # the sampled values differ between trials
