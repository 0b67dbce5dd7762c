"""Speaker-grouped k-fold cross-validation (data.split.folds): the estimate for small real data sets.

Each fold trains a fresh model on the other folds' speakers for hparams.max_epochs and keeps the
last weights: nothing looks at the held-out speakers until the fold is scored, so the per-fold
figures are estimates on voices never heard, free of epoch selection. Every clip is scored once,
by the fold model that never heard its speaker (the out-of-fold predictions): the pooled figure,
the calibration fit and the monitoring reference of a cross-validated run come from them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scopeml.config.schema import Config
from scopeml.data import KeywordData
from scopeml.metrics import QUALITY
from scopeml.training import evaluate
from scopeml.training.calibration import softmax

log = logging.getLogger("scopeml.train")

SUMMARY_METRICS = (*QUALITY, "loss")


@dataclass
class CrossValidation:
    """The folds' scores and the out-of-fold logits, by manifest row."""

    scheme: str  #: "leave-one-speaker-out" or "speaker-grouped k-fold"
    per_fold: list[dict] = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  #: manifest rows scored
    logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  #: out-of-fold logits of those rows
    fold_of_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def summary(self, pooled: dict, minutes: float) -> dict:
        """metrics.json's "cv" block: per-fold scores, their mean and spread, and the pooled out-of-fold score."""
        present = [m for m in SUMMARY_METRICS if all(m in f for f in self.per_fold)]
        mean = {m: float(np.mean([f[m] for f in self.per_fold])) for m in present}
        std = {m: float(np.std([f[m] for f in self.per_fold], ddof=1)) for m in present}
        return {
            "scheme": self.scheme,
            "folds": len(self.per_fold),
            "per_fold": self.per_fold,
            "mean": mean,
            "std": std,
            "pooled": {k: v for k, v in pooled.items() if k != "per_class"},
            "minutes": minutes,
            "note": "each fold trained hparams.max_epochs on the other folds' speakers, last weights kept; "
            "mean and std (ddof=1) are over folds, pooled is every clip scored by the fold model that never "
            "heard its speaker",
        }


def run_folds(
    config: Config, data: KeywordData, build_module: Callable, trainer_for: Callable[[int], object]
) -> CrossValidation:
    """Train and score every fold. `build_module()` makes a fresh LightningModule, `trainer_for(k)` the trainer."""
    import lightning as L

    folds = data.folds
    speakers = data.manifest.loc[data.manifest["fold"] >= 0, "speaker"].nunique()
    result = CrossValidation("leave-one-speaker-out" if len(folds) == speakers else "speaker-grouped k-fold")
    rows, logits, fold_of_row = [], [], []
    hp = config.hparams
    for k in folds:
        view = data.fold_view(k)
        held = view.indices("cv")
        heard = sorted(view.manifest.iloc[held]["speaker"].unique())
        log.info("fold %d/%d: %d training clips, holding out %s", k + 1, len(folds), len(view.indices("train")), heard)
        L.seed_everything(config.seed, workers=True, verbose=False)  # every fold starts from the same draw
        module = build_module()
        trainer_for(k).fit(module, view.loader("train", hp.batch_size, shuffle=True, seed=config.seed))
        fold_logits = evaluate.predict_logits(module.cpu().eval(), view, "cv")
        scores = evaluate.score(view, "cv", softmax(fold_logits))
        result.per_fold.append(
            {
                "fold": k,
                "speakers": heard,
                **{m: scores[m] for m in SUMMARY_METRICS if m in scores},
                "clips": scores["clips"],
            }
        )
        parts = _parts_alone(module, view)
        result.per_fold[-1].update(parts)
        log.info(
            "fold %d/%d (%s): accuracy %.4f%s",
            k + 1,
            len(folds),
            ", ".join(heard),
            scores["accuracy"],
            _describe(parts),
        )
        rows.append(held)
        logits.append(fold_logits)
        fold_of_row.append(np.full(len(held), k))
    result.rows = np.concatenate(rows)
    result.logits = np.concatenate(logits)
    result.fold_of_row = np.concatenate(fold_of_row)
    return result


def _parts_alone(module, view: KeywordData) -> dict:
    """A network built from a network, scored on the held-out fold without what it adds: each member of an
    ensemble alone (models.ensemble: `members_accuracy`), the member of test-time views on the features as
    they are (models.test_time: `without_views_accuracy`). Those are the same fold's single model, so the
    gain is measured on the same training draw, not against another run's seed."""
    from torch import nn

    from scopeml.models.test_time import TestTimeViews

    front, network = module.net[0], module.net[1]

    def accuracy(part: nn.Module) -> float:
        probs = softmax(evaluate.predict_logits(nn.Sequential(front, part), view, "cv"))
        return float(evaluate.score(view, "cv", probs)["accuracy"])

    members = getattr(network, "members", None)
    if isinstance(members, nn.ModuleList) and len(members) >= 2:
        return {"members_accuracy": [accuracy(m) for m in members]}
    if isinstance(network, TestTimeViews):
        return {"without_views_accuracy": accuracy(network.member)}
    return {}


def _describe(parts: dict) -> str:
    if "members_accuracy" in parts:
        return f" (members alone: {', '.join(f'{a:.4f}' for a in parts['members_accuracy'])})"
    if "without_views_accuracy" in parts:
        return f" (without test-time views: {parts['without_views_accuracy']:.4f})"
    return ""


def baselines(data: KeywordData, seed: int = 0) -> dict:
    """The data phase's baselines (majority class, logistic regression on MFCC statistics) cross-validated over
    the same folds, so a cross-validated model is compared with them on equal terms: {name: {"cv": mean}}."""
    from scopeml.data.baseline import logreg_model, mfcc_stats
    from scopeml.metrics import category_indices, classification_metrics

    feats, y, n = mfcc_stats(data.waves, data.sample_rate), data.targets, len(data.classes)
    categories = category_indices(data.classes)
    fold = data.manifest["fold"].to_numpy()
    scores: dict[str, list[dict]] = {"majority": [], "logreg_mfcc": []}
    for k in data.folds:
        held, train = np.flatnonzero(fold == k), np.flatnonzero((fold != k) & (fold != -1))
        majority = int(np.bincount(y[train], minlength=n).argmax())
        scores["majority"].append(classification_metrics(y[held], np.full(len(held), majority), n, categories))
        model = logreg_model(seed)
        model.fit(feats[train], y[train])
        scores["logreg_mfcc"].append(classification_metrics(y[held], model.predict(feats[held]), n, categories))
    return {
        name: {"cv": {m: float(np.mean([f[m] for f in folds])) for m in folds[0]}} for name, folds in scores.items()
    }
