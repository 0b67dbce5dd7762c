"""The numbers a model must beat: the majority class, and logistic regression on MFCC statistics."""

from __future__ import annotations

import numpy as np

from scopeml.data.dataset import KeywordData
from scopeml.metrics import classification_metrics


def mfcc_stats(waves: np.ndarray, sample_rate: int, n_mfcc: int = 20, batch: int = 512) -> np.ndarray:
    """Mean and standard deviation over time of each MFCC: a fixed-size summary of a clip."""
    import torch
    import torchaudio

    mfcc = torchaudio.transforms.MFCC(
        sample_rate=sample_rate, n_mfcc=n_mfcc, melkwargs={"n_fft": 480, "hop_length": 160, "n_mels": 40}
    )
    out = []
    with torch.no_grad():
        for start in range(0, len(waves), batch):
            m = mfcc(torch.from_numpy(np.ascontiguousarray(waves[start : start + batch])))
            out.append(torch.cat([m.mean(-1), m.std(-1)], dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 2 * n_mfcc), np.float32)


def compute(data: KeywordData, seed: int = 0) -> dict:
    """Scores of both baselines on val and test (speaker-disjoint, like every model)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = data.targets
    train, evals = data.indices("train"), {s: data.indices(s) for s in ("val", "test")}
    n = len(data.classes)
    majority = int(np.bincount(y[train], minlength=n).argmax())
    result = {"majority": {"class": data.classes[majority]}, "logreg_mfcc": {"features": "mean+std of 20 MFCCs"}}
    for split, idx in evals.items():
        result["majority"][split] = classification_metrics(y[idx], np.full(len(idx), majority), n)

    feats = mfcc_stats(data.waves, data.sample_rate)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    model.fit(feats[train], y[train])
    for split, idx in evals.items():
        result["logreg_mfcc"][split] = classification_metrics(y[idx], model.predict(feats[idx]), n)
    best = max(("majority", "logreg_mfcc"), key=lambda k: result[k]["test"]["accuracy"])
    result["best"] = best
    return result


def lift(model_test: dict, baseline: dict) -> dict:
    """How far the model is above the best baseline on the test split, metric by metric."""
    ref = baseline[baseline["best"]]["test"]
    return {k: model_test[k] - ref[k] for k in ("accuracy", "macro_f1") if k in model_test and k in ref}
