"""Metric definitions: the one place that says what each scoping metric means.

Training, selection, serving and monitoring all score against these names, so a
target such as `accuracy: {min: 0.9}` means the same thing in every phase.
Only numpy here: serving and monitoring import this without torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    phase: str  # where it can be measured: offline (training), serving, monitoring
    unit: str
    doc: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", True, "offline", "", "fraction of clips whose top class is the label"),
        Metric("macro_f1", True, "offline", "", "unweighted mean of per-class F1"),
        Metric("min_class_recall", True, "offline", "", "recall of the worst class"),
        Metric(
            "keyword_recall",
            True,
            "offline",
            "",
            "fraction of keyword clips (labels that are not a category class) whose top class is their keyword",
        ),
        Metric(
            "false_accept_rate",
            False,
            "offline",
            "",
            "fraction of clips of a category class (unknown words, silence) answered with a keyword; "
            "needs such a class in scoping.classes",
        ),
        Metric("model_size_mb", False, "offline", "MB", "serialized float32 weights (state_dict), megabytes"),
        Metric("params", False, "offline", "", "trainable parameter count"),
        Metric("train_minutes", False, "offline", "min", "wall time of fit + test"),
        Metric("latency_p95_ms", False, "serving", "ms", "95th percentile request latency at the service"),
        Metric("throughput_qps", True, "serving", "qps", "sustained requests per second without errors"),
        Metric("estimated_accuracy", True, "monitoring", "", "NannyML CBPE accuracy estimate per chunk"),
    ]
}


# What classification_metrics measures: the offline quality metrics every phase reports in this order
# (the last two only when the classes include a category class).
CATEGORY_METRICS = ("keyword_recall", "false_accept_rate")  # need a category class among the classes
QUALITY = ("accuracy", "macro_f1", "min_class_recall", *CATEGORY_METRICS)

# Classes that name a kind of clip rather than a word someone says: a prediction of one is a rejection
# ("not a keyword"), so answering one of their clips with any other class is a false accept.
CATEGORY_NAMES = ("unknown", "silence", "noise", "background", "other")


def is_category(name: str, unknown: str | None = None) -> bool:
    """A class that names a kind of clip, not a word someone says."""
    return name == unknown or name.startswith("_") or name.endswith("_") or name.lower() in CATEGORY_NAMES


def category_indices(classes: Sequence[str]) -> list[int]:
    """Positions of the category classes in `classes`: what keyword_recall and false_accept_rate need."""
    return [i for i, name in enumerate(classes) if is_category(name)]


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, categories: Sequence[int] = ()
) -> dict[str, float]:
    """Accuracy, macro-F1 and worst-class recall from integer labels; with `categories` (category_indices),
    keyword recall and the false-accept rate too (NaN when the split has no clip of that kind)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0  # classes absent from y_true say nothing about this split
    out = {
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "macro_f1": float(np.mean(f1[present])) if present.any() else float("nan"),
        "min_class_recall": float(np.nanmin(recall)) if present.any() else float("nan"),
    }
    if len(categories):
        rejected_true, rejected_pred = np.isin(y_true, categories), np.isin(y_pred, categories)
        keyword = ~rejected_true
        out["keyword_recall"] = float(np.mean(y_pred[keyword] == y_true[keyword])) if keyword.any() else float("nan")
        out["false_accept_rate"] = (
            float(np.mean(~rejected_pred[rejected_true])) if rejected_true.any() else float("nan")
        )
    return out


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    cm = confusion_matrix(y_true, y_pred, len(classes))
    out = {}
    for i, name in enumerate(classes):
        tp, support, predicted = cm[i, i], cm[i].sum(), cm[:, i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if support and (precision + recall) else 0.0
        out[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(support)}
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


@dataclass(frozen=True)
class TargetResult:
    metric: str
    op: str  # ">=" or "<="
    target: float
    value: float | None
    passed: bool | None  # None: not measurable in this phase

    def as_dict(self) -> dict:
        return {"metric": self.metric, "op": self.op, "target": self.target, "value": self.value, "passed": self.passed}


def evaluate_targets(targets: Mapping[str, object], measured: Mapping[str, float]) -> list[TargetResult]:
    """Hold every scoping target against the measured values; unmeasured ones stay `passed=None`."""
    results = []
    for name, target in targets.items():
        bound_min, bound_max = getattr(target, "min", None), getattr(target, "max", None)
        op, bound = (">=", bound_min) if bound_min is not None else ("<=", bound_max)
        value = measured.get(name)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            results.append(TargetResult(name, op, bound, None, None))
            continue
        passed = value >= bound if op == ">=" else value <= bound
        results.append(TargetResult(name, op, bound, float(value), bool(passed)))
    return results
