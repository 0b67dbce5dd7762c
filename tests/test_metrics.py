"""The shared metric definitions agree with scikit-learn and judge targets correctly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion

from scopeml.config.schema import Target
from scopeml.metrics import classification_metrics, confusion_matrix, evaluate_targets, per_class_metrics


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 400)
    y_pred = np.where(rng.random(400) < 0.7, y_true, rng.integers(0, 5, 400))
    ours = classification_metrics(y_true, y_pred, 5)
    assert ours["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert ours["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert ours["min_class_recall"] == pytest.approx(recall_score(y_true, y_pred, average=None).min())
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 5), sk_confusion(y_true, y_pred, labels=range(5)))
    per_class = per_class_metrics(y_true, y_pred, list("abcde"))
    assert per_class["c"]["f1"] == pytest.approx(f1_score(y_true, y_pred, average=None)[2])


def test_targets_pass_fail_and_unmeasured():
    targets = {"accuracy": Target(min=0.9), "model_size_mb": Target(max=1.0), "latency_p95_ms": Target(max=20)}
    results = {r.metric: r for r in evaluate_targets(targets, {"accuracy": 0.85, "model_size_mb": 0.2})}
    assert results["accuracy"].passed is False and results["accuracy"].op == ">="
    assert results["model_size_mb"].passed is True and results["model_size_mb"].op == "<="
    assert results["latency_p95_ms"].passed is None and results["latency_p95_ms"].value is None
    edge = evaluate_targets({"accuracy": Target(min=0.9)}, {"accuracy": 0.9})
    assert edge[0].passed is True  # a bound is inclusive
