"""Speaker-grouped k-fold cross-validation (data.split.folds): folds, the bad-input checks, and a real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, TINY_DATA, TINY_FIT, composed, offline_run, read_json, run_cli, train

from scopeml.config.schema import SplitConfig
from scopeml.data.splits import EVERY_FOLD, TEST_FOLD, SplitError, assign_folds, check_fold_classes

SPEAKERS = ["ann", "bob", "cy", "dee"]


def test_folds_equal_to_speakers_is_leave_one_speaker_out():
    folds = assign_folds(SPEAKERS * 3, SplitConfig(folds=4, seed=3))
    assert sorted(folds) == SPEAKERS and sorted(folds.values()) == [0, 1, 2, 3]


def test_fewer_folds_deal_speakers_evenly_and_test_speakers_stay_out():
    folds = assign_folds([*SPEAKERS, "eve"], SplitConfig(folds=2, test_speakers=["eve"]))
    assert folds["eve"] == TEST_FOLD
    assert sorted(np.bincount([k for s, k in folds.items() if s != "eve"])) == [2, 2]


def test_more_folds_than_speakers_fails_naming_the_key():
    with pytest.raises(SplitError, match=r"data.split.folds=5: only 4 speaker\(s\)"):
        assign_folds(SPEAKERS, SplitConfig(folds=5))


def test_a_class_absent_from_a_fold_fails_naming_the_key_and_the_fold():
    labels = ["yes", "no", "yes", "no", "yes"]  # the last speaker's fold holds out no "no"
    folds = [0, 0, 1, 1, 2]
    with pytest.raises(SplitError, match=r"data.split.folds: .*fold 2 holds out no clip of \['no'\]"):
        check_fold_classes(labels, folds, ["yes", "no"])
    # "no" only in fold 0: fold 0's model never trains on it. A component trained in every fold mends that side.
    labels, folds = ["yes", "no", "yes"], [0, 0, 1]
    with pytest.raises(SplitError, match=r"fold 0 trains on no clip of \['no'\]"):
        check_fold_classes(labels, folds, ["yes", "no"])
    with pytest.raises(SplitError) as raised:
        check_fold_classes([*labels, "no"], [*folds, EVERY_FOLD], ["yes", "no"])
    assert "trains on" not in str(raised.value) and "fold 1 holds out no clip of ['no']" in str(raised.value)


def test_fold_problems_are_config_errors_before_any_work(tmp_path: Path):
    from scopeml.config import ConfigError, load

    proc = run_cli(
        "scopeml.cli.train", f"hydra.run.dir={tmp_path / 'run'}", "data.split.folds=3", "data.split.val_speakers=[a]"
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.split.val_speakers: not used with folds" in proc.stderr
    assert not (tmp_path / "run" / "data_fingerprint.json").exists()
    for override, key in [
        ("trainer.early_stopping_patience=2", "trainer.early_stopping_patience"),
        ("resume=true", "resume"),
        ("data.split.folds=1", "data.split.folds"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load(composed("data.split.folds=3", override) if "folds=1" not in override else composed(override))


def test_a_primary_metric_the_sweeper_cannot_read_fails_naming_the_key():
    from scopeml.config import ConfigError, load

    with pytest.raises(ConfigError, match=r"scoping.primary_metric: latency_p95_ms is measured in the serving phase"):
        load(composed("scoping.primary_metric=latency_p95_ms"))


def test_too_many_folds_for_the_data_fails_before_training(tmp_path: Path):
    proc = train(tmp_path / "run", *TINY_DATA, *TINY_FIT, "data.split.folds=6")  # the tiny data has 5 voices
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.split.folds=6: only 5 speaker(s)" in proc.stderr
    assert read_json(tmp_path / "run" / "status.json")["stage"] == "data"
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cv") / "run"
    proc = train(run_dir, *TINY_DATA, *TINY_FIT, "data.split.folds=2", "data.split.test_speakers=[en+m7]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_the_configs_callbacks_train_every_fold_as_well_as_the_model_to_ship(tmp_path: Path, monkeypatch):
    # a callback that changes training (SWA, EMA) must be in the recipe the CV figure measures
    fit_log = tmp_path / "fits.txt"  # a user's callback (tests/user_parts.py) notes every training it joins
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    proc = train(
        tmp_path / "run",
        *TINY_DATA,
        *TINY_FIT,
        "hparams.max_epochs=1",
        "data.split.folds=2",
        "data.split.test_speakers=[en+m7]",
        f"+callbacks.fits={{_target_:user_parts.FitLog,path:{fit_log}}}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fit_log.read_text().split() == ["0", "1", "run"]


@pytest.mark.slow
def test_cross_validated_run_reports_folds_mean_and_spread_from_the_right_splits(cv_run: Path):
    metrics = read_json(cv_run / "metrics.json")
    cv = metrics["cv"]
    assert metrics["selection_split"] == "cv" and metrics["val"] == {}
    assert cv["folds"] == 2 and cv["scheme"] == "speaker-grouped k-fold"
    assert cv["minutes"] > 0 and metrics["train_minutes"] > 0  # the folds' time is kept apart from the final fit's
    per_fold = [f["accuracy"] for f in cv["per_fold"]]
    assert cv["mean"]["accuracy"] == pytest.approx(np.mean(per_fold))
    assert cv["std"]["accuracy"] == pytest.approx(np.std(per_fold, ddof=1))
    held_out = sorted(s for f in cv["per_fold"] for s in f["speakers"])
    assert held_out == ["en+f1", "en+f4", "en+m1", "en+m3"]  # every non-test voice held out exactly once
    # Targets are measured on the CV mean; the test voice is scored by the final model and reported beside.
    by_name = {t["metric"]: t for t in metrics["targets"]}
    assert by_name["accuracy"]["value"] == pytest.approx(cv["mean"]["accuracy"])
    # the 12-class default: false accepts are a per-fold figure like the others, and a target on the CV mean
    false_accepts = [f["false_accept_rate"] for f in cv["per_fold"]]
    assert cv["mean"]["false_accept_rate"] == pytest.approx(np.mean(false_accepts))
    assert by_name["false_accept_rate"]["value"] == pytest.approx(cv["mean"]["false_accept_rate"])
    assert metrics["test"]["clips"] == len(pd.read_parquet(cv_run / "predictions_test.parquet"))
    assert set(metrics["baseline"]["logreg_mfcc"]) == {"cv", "test"}


@pytest.mark.slow
def test_a_scoping_without_category_classes_cross_validates_without_their_metrics(tmp_path: Path):
    # every class a keyword (the digits, keywords10): no keyword recall or false accepts to report, per fold or mean
    run_dir = tmp_path / "run"
    extra = ["scoping=keywords10", "data.split.folds=2", "data.split.test_speakers=[en+m7]", "hparams.max_epochs=1"]
    proc = train(run_dir, *TINY_DATA, *TINY_FIT, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cv = read_json(run_dir / "metrics.json")["cv"]
    assert "accuracy" in cv["mean"] and "false_accept_rate" not in cv["mean"]
    assert all("keyword_recall" not in fold for fold in cv["per_fold"])


@pytest.mark.slow
def test_out_of_fold_predictions_cover_every_clip_once_scored_by_the_fold_that_held_it_out(cv_run: Path):
    oof = pd.read_parquet(cv_run / "predictions_cv.parquet")
    assert not (cv_run / "predictions_val.parquet").exists()
    assert oof["clip_id"].is_unique and set(oof["split"]) == {"cv"}
    assert "en+m7" not in set(oof["speaker"])
    metrics = read_json(cv_run / "metrics.json")
    for fold in metrics["cv"]["per_fold"]:
        rows = oof[oof["fold"] == fold["fold"]]
        assert sorted(rows["speaker"].unique()) == fold["speakers"]
        assert len(rows) == fold["clips"]
    assert metrics["cv"]["pooled"]["accuracy"] == pytest.approx(oof["correct"].mean())
    assert metrics["calibration"]["fitted_on"] == "cv"


@pytest.mark.slow
def test_cross_validation_is_in_wandb_and_the_selection_ranks_on_the_mean(cv_run: Path, tmp_path: Path):
    summary = offline_run(sorted((cv_run / "wandb").glob("offline-run-*"))[0])["summary"]
    metrics = read_json(cv_run / "metrics.json")
    assert summary["cv/mean/accuracy"] == pytest.approx(metrics["cv"]["mean"]["accuracy"])
    assert summary["cv/fold0/accuracy"] == pytest.approx(metrics["cv"]["per_fold"][0]["accuracy"])
    assert summary["selection_split"] == "cv"
    proc = run_cli("scopeml.cli.select", str(cv_run), "--out", str(tmp_path / "selection.json"))
    selection = read_json(tmp_path / "selection.json")
    assert selection["split"] == "cv", proc.stdout + proc.stderr
    # The tiny model misses the accuracy targets: rejected, with the value it was judged by (the CV mean).
    (judged,) = selection["ranking"] or selection["rejected"]
    assert judged["value"] == pytest.approx(metrics["cv"]["mean"][metrics["primary_metric"]])
    assert "on the cv split" in proc.stdout


@pytest.mark.slow
def test_a_cross_validated_run_packages_with_its_out_of_fold_reference(cv_run: Path, tmp_path: Path):
    """The final model ships; the bundle carries the out-of-fold predictions and says its figures are CV ones."""
    import json
    import os

    home = tmp_path / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    proc = run_cli("scopeml.cli.package", str(cv_run), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = [p for p in (home / "models").glob("*/*") if p.is_dir()]
    assert (folder / "predictions_cv.parquet").is_file() and (folder / "predictions_test.parquet").is_file()
    serving = json.loads((folder / "serving.json").read_text())
    assert serving["metrics"]["selection_split"] == "cv"
    assert serving["metrics"]["cv"]["mean"] == read_json(cv_run / "metrics.json")["cv"]["mean"]
    reference = pd.read_parquet(folder / "reference.parquet")
    assert (
        len(reference)
        == len(pd.read_parquet(cv_run / "predictions_cv.parquet")) + read_json(cv_run / "metrics.json")["test"]["clips"]
    )


def test_the_sweep_summary_shows_each_jobs_cv_mean_spread_and_folds_and_no_test_figures(tmp_path: Path):
    import json

    from scopeml.sweep import summarize, write_summary

    for job, (mean, std) in enumerate([(0.81, 0.09), (0.74, 0.02)]):
        folder = tmp_path / str(job)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- data.split.folds=2\n- hparams.lr={job + 1}e-3\n")
        (folder / "status.json").write_text(json.dumps({"status": "complete", "stage": "done"}))
        per_fold = [
            {"fold": 0, "speakers": ["ann"], "accuracy": mean + std / 2},
            {"fold": 1, "speakers": ["bob"], "accuracy": mean - std / 2},
        ]
        cv = {"mean": {"accuracy": mean}, "std": {"accuracy": std}, "per_fold": per_fold}
        metrics = {"selection_split": "cv", "cv": cv, "val": {}, "test": {"accuracy": 0.99}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = summarize(tmp_path)
    assert [r["overrides"] for r in rows] == ["hparams.lr=1e-3", "hparams.lr=2e-3"]
    assert rows[0]["split"] == "cv" and rows[0]["accuracy"] == 0.81 and rows[0]["accuracy_std"] == 0.09
    assert rows[0]["folds"] == f"ann:{0.855:.3f} bob:{0.765:.3f}"
    assert all(0.99 not in r.values() for r in rows)  # the test split chooses nothing, so it is not listed
    write_summary(tmp_path, rows)
    assert "accuracy_std" in (tmp_path / "sweep_summary.md").read_text()


def test_shortage_check_counts_held_out_folds_not_the_empty_val_split():
    from scopeml.config.schema import ChecksConfig
    from scopeml.data.checks import _too_few

    rows = [(s, lab, k) for k, s in enumerate(SPEAKERS) for lab in ("yes", "no") for _ in range(5)]
    m = pd.DataFrame(rows, columns=["speaker", "label", "fold"]).assign(split="train")
    cfg = ChecksConfig(min_clips_per_label=5)
    folds = [0, 1, 2, 3]
    assert _too_few(m, ["yes", "no"], cfg, folds)["status"] == "pass"  # val and test are empty by design under folds
    short = _too_few(m.drop(m.index[(m["fold"] == 2) & (m["label"] == "no")][:1]), ["yes", "no"], cfg, folds)
    assert short["status"] == "fail"
    assert short["details"]["labels"] == [{"split": "fold 2", "label": "no", "clips": 4, "minimum": 5}]
    # Without folds every split is counted, val included.
    single = m.drop(columns="fold").assign(split=m["speaker"].map({"ann": "train", "bob": "train", "cy": "val"}))
    single["split"] = single["split"].fillna("test")
    assert _too_few(single, ["yes", "no"], cfg, [])["status"] == "pass"
    no_val_no = single.drop(single.index[(single["split"] == "val") & (single["label"] == "no")])
    assert _too_few(no_val_no, ["yes", "no"], cfg, [])["details"]["labels"] == [
        {"split": "val", "label": "no", "clips": 0, "minimum": 5}
    ]
