"""Turn a finished fit into metrics.json and the scoping scorecard."""

from __future__ import annotations

import torch

from scopeml.config.schema import Config
from scopeml.data import KeywordData
from scopeml.metrics import METRICS, QUALITY, evaluate_targets
from scopeml.models import count_parameters, size_mb


def load_best(trainer, module):
    """Restore the best checkpoint's weights (weights_only: never unpickle arbitrary objects)."""
    path = trainer.checkpoint_callback.best_model_path or trainer.checkpoint_callback.last_model_path
    if path:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    return module.cpu().eval()


def save_augment_log(run_dir, module, data: KeywordData) -> None:
    """Every augmentation drawn in training, by clip, so error analysis can slice by what was applied."""
    if not module.augment_records:
        return
    import pandas as pd

    log = pd.DataFrame(module.augment_records)
    log.insert(1, "clip_id", data.manifest["clip_id"].to_numpy()[log["index"].to_numpy()])
    log.to_parquet(run_dir / "augment_log.parquet", index=False)


def held_out_rows(data: KeywordData, cv) -> dict:
    """Manifest rows of every split scored after training, by split name; empty splits left out.

    A cross-validated run has no validation split: its "cv" rows are every clip a fold held out."""
    splits = {"cv": cv.rows} if cv is not None else {"val": data.indices("val")}
    splits["test"] = data.indices("test")
    return {split: rows for split, rows in splits.items() if len(rows)}


def calibrate_held_out(data: KeywordData, rows: dict, logits: dict, run_dir, fit_split: str) -> tuple[dict, dict]:
    """Temperature fitted on `fit_split` (validation, or the out-of-fold logits of cross-validation) and applied
    to every split; the calibrated probabilities are the ones saved and served (CBPE needs them)."""
    from scopeml.training import calibration as cal

    targets = {split: data.targets[r] for split, r in rows.items()}
    return cal.calibrate(
        logits,
        targets,
        fit_split=fit_split,
        plot_path=run_dir / "calibration.png",
        plot_split="test" if "test" in rows else None,
    )


def save_predictions(run_dir, data: KeywordData, rows: dict, probs: dict, cv) -> None:
    """predictions_<split>.parquet for every scored split; out-of-fold rows say which fold held them out."""
    from scopeml.training import artifacts

    for split, r in rows.items():
        manifest = data.manifest.iloc[r]
        if split == "cv":
            manifest = manifest.assign(split="cv", fold=cv.fold_of_row)
        artifacts.save_predictions(run_dir / f"predictions_{split}.parquet", manifest, probs[split], data.classes)


def analyze_errors(config: Config, run_dir, logger, data: KeywordData, split: str = "test") -> dict:
    """Confusion matrix, per-class and per-slice metrics, confused pairs and worst examples of one split."""
    import pandas as pd

    from scopeml.training import errors

    preds = pd.read_parquet(run_dir / f"predictions_{split}.parquet")
    target = config.scoping.targets.get("accuracy")
    summary = errors.analyze(preds, data.classes, run_dir / "errors", target_accuracy=target.min if target else None)
    summary["split"] = split
    if logger is not None:
        index = {cid: i for i, cid in enumerate(data.manifest["clip_id"])}
        errors.log_to_wandb(
            logger.experiment,
            summary,
            run_dir / "errors",
            preds,
            audio_lookup=lambda cid: (data.waves[index[cid]], data.sample_rate),
        )
    return {k: summary[k] for k in ("split", "confused_pairs", "flagged_slices") if k in summary}


SPLIT_NAMES = {
    "val": "validation split (speakers not trained on)",
    "cv": "cross-validation mean over folds (each fold's speakers held out)",
    "test": "test split (reported once, never used to choose)",
}


def build_metrics(
    config: Config,
    model,
    scores: dict,
    selection_split: str,
    cv: dict | None,
    minutes: float,
    run_name: str,
    fingerprint: dict,
    baseline: dict,
) -> dict:
    """metrics.json. Targets and the primary metric are measured on `selection_split` (val, or the CV mean);
    the test split's scores sit beside them and choose nothing."""
    chosen_on = cv["mean"] if cv else scores[selection_split]
    measured = {
        **{k: chosen_on[k] for k in QUALITY if k in chosen_on},
        "model_size_mb": size_mb(model),
        "params": count_parameters(model),
        "train_minutes": minutes,
    }
    targets = evaluate_targets(config.scoping.targets, measured)
    checked = [t for t in targets if t.passed is not None]
    test = scores.get("test", {})
    metrics = {
        "run_name": run_name,
        "status": "complete",
        "scoping": config.scoping.name,
        "primary_metric": config.scoping.primary_metric,
        "selection_split": selection_split,
        "splits": {split: SPLIT_NAMES[split] for split in (selection_split, *scores) if split in SPLIT_NAMES},
        "test": {k: v for k, v in test.items() if k != "per_class"},
        "val": {k: v for k, v in scores.get("val", {}).items() if k != "per_class"},
        "per_class_test": test.get("per_class", {}),
        "model": {
            "arch": config.model["_target_"],
            "params": measured["params"],
            "model_size_mb": measured["model_size_mb"],
        },
        "train_minutes": minutes,
        "measured": measured,
        "targets": [t.as_dict() for t in targets],
        "targets_met": all(t.passed for t in checked),
        "targets_not_measured": [t.metric for t in targets if t.passed is None],
        "data_fingerprint": fingerprint["fingerprint"],
        "baseline": {
            name: {split: baseline[name][split] for split in scores if split in baseline[name]}
            for name in ("majority", "logreg_mfcc")
        },
        "lift_over_baseline": _lift(chosen_on, baseline, selection_split),
    }
    if cv:
        metrics["cv"] = cv
    return metrics


def baselines_on(data_phase: dict, cross_validated: dict) -> dict:
    """The data phase's baseline scores by split, with the cross-validated ones (split "cv") added."""
    cross_validated = cross_validated or {}
    return {
        name: {**{k: v for k, v in data_phase[name].items() if k in ("val", "test")}, **cross_validated.get(name, {})}
        for name in ("majority", "logreg_mfcc")
    }


def _lift(scores: dict, baseline: dict, split: str) -> dict:
    """The model minus the better baseline on `split` (chosen on that split too), by metric."""
    from scopeml.data.baseline import choose_best

    scored = {name: baseline[name] for name in ("majority", "logreg_mfcc") if split in baseline[name]}
    if not scored:
        return {}
    best, _ = choose_best(scored, {split: 1})
    ref = baseline[best][split]
    return {k: scores[k] - ref[k] for k in ("accuracy", "macro_f1") if k in scores and k in ref}


def objective(config: Config, metrics: dict) -> float:
    """What sweepers optimize: the primary metric as measured on the selection split. A value that cannot be
    computed fails the run (a sweep records the job as failed and goes on) rather than steer a sweeper."""
    import math

    name = config.scoping.primary_metric
    value = metrics["measured"].get(name)
    if not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(
            f"scoping.primary_metric: {name} on the {metrics['selection_split']} split is {value!r}; "
            "the sweep objective cannot be computed (is the split empty, or a class missing from it?)"
        )
    return float(value)


def flat_summary(metrics: dict, fingerprint: dict, git: dict) -> dict:
    out = {f"test/{k}": v for k, v in metrics["test"].items()}
    out.update({f"val/{k}": v for k, v in metrics["val"].items()})
    out["selection_split"] = metrics["selection_split"]
    if "cv" in metrics:
        cv = metrics["cv"]
        out.update({f"cv/mean/{k}": v for k, v in cv["mean"].items()})
        out.update({f"cv/std/{k}": v for k, v in cv["std"].items()})
        out.update({f"cv/pooled/{k}": v for k, v in cv["pooled"].items()})
        for fold in cv["per_fold"]:
            out.update({f"cv/fold{fold['fold']}/{k}": fold[k] for k in QUALITY if k in fold})
    out.update({"model/params": metrics["model"]["params"], "model/size_mb": metrics["model"]["model_size_mb"]})
    out["train_minutes"] = metrics["train_minutes"]
    for t in metrics["targets"]:
        out[f"target/{t['metric']}"] = {
            "op": t["op"],
            "target": t["target"],
            "value": t["value"],
            "passed": t["passed"],
        }
    out["targets_met"] = metrics["targets_met"]
    out.update(
        {
            f"baseline/{name}/{split}/accuracy": scores["accuracy"]
            for name, b in metrics["baseline"].items()
            for split, scores in b.items()
        }
    )
    out.update({f"lift/{k}": v for k, v in metrics["lift_over_baseline"].items()})
    out["data/fingerprint"] = fingerprint["fingerprint"]
    out["data/content_sha256"] = fingerprint["content_sha256"]
    out["git/commit"] = git.get("commit")
    out["git/dirty"] = git.get("dirty")
    return out


def print_scorecard(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    split = metrics["selection_split"]
    title = f"Scoping targets: {metrics['scoping']} ({metrics['run_name']}), measured on {SPLIT_NAMES[split]}"
    table = Table(title=title)
    test = metrics["test"]
    for col in ("metric", "target", f"measured ({split})", "result", "test (reported)"):
        table.add_column(col)
    for t in metrics["targets"]:
        unit = METRICS[t["metric"]].unit
        value = "-" if t["value"] is None else f"{t['value']:.4g}{(' ' + unit) if unit else ''}"
        result = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: f"[dim]later ({METRICS[t['metric']].phase})[/]"}[
            t["passed"]
        ]
        on_test = f"{test[t['metric']]:.4g}" if t["metric"] in test else "-"
        table.add_row(t["metric"], f"{t['op']} {t['target']:g}", value, result, on_test)
    console = Console(stderr=True)
    console.print(table)
    if "cv" in metrics:
        cv = metrics["cv"]
        folds = ", ".join(f"{'+'.join(f['speakers'])} {f['accuracy']:.3f}" for f in cv["per_fold"])
        console.print(
            f"{cv['scheme']} ({cv['folds']} folds): accuracy {cv['mean']['accuracy']:.4f} "
            f"± {cv['std']['accuracy']:.4f} (mean ± std over folds); by held-out speakers: {folds}"
        )
    baseline = metrics["baseline"]
    for b_split in ("val", "test"):
        if all(b_split in b for b in baseline.values()):
            console.print(
                f"baselines ({b_split} accuracy): majority {baseline['majority'][b_split]['accuracy']:.3f}, "
                f"logistic regression on MFCC stats {baseline['logreg_mfcc'][b_split]['accuracy']:.3f}"
            )
    if metrics["lift_over_baseline"]:
        console.print(f"lift over the best baseline ({split}): {metrics['lift_over_baseline']['accuracy']:+.3f}")
