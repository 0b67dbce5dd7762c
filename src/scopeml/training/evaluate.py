"""Score a trained model on a split with the shared metric definitions."""

from __future__ import annotations

import numpy as np
import torch

from scopeml.data import KeywordData
from scopeml.metrics import category_indices, classification_metrics, per_class_metrics


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: KeywordData, split: str, batch_size: int = 256) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    chunks = [model(waves.to(device)).cpu() for waves, *_ in data.loader(split, batch_size)]
    return torch.cat(chunks).numpy().astype(np.float64) if chunks else np.zeros((0, len(data.classes)))


@torch.no_grad()
def latency_ms(model: torch.nn.Module, data: KeywordData, runs: int = 50) -> dict:
    """Single-clip CPU latency of the model call, for ranking models of equal quality."""
    import time

    model = model.cpu().eval()
    clip = torch.from_numpy(np.ascontiguousarray(data.waves[:1]))
    for _ in range(5):
        model(clip)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model(clip)
        times.append(1000 * (time.perf_counter() - t))
    return {
        "p50": float(np.percentile(times, 50)),
        "p95": float(np.percentile(times, 95)),
        "threads": torch.get_num_threads(),
    }


def score(data: KeywordData, split: str, probs: np.ndarray) -> dict:
    return score_rows(data, data.indices(split), probs)


def score_rows(data: KeywordData, rows: np.ndarray, probs: np.ndarray) -> dict:
    """The shared metrics of the clips at manifest `rows`, given their predicted probabilities."""
    y_true = data.targets[rows]
    y_pred = probs.argmax(axis=1)
    eps = 1e-12
    nll = float(-np.mean(np.log(probs[np.arange(len(y_true)), y_true] + eps))) if len(y_true) else float("nan")
    return {
        **classification_metrics(y_true, y_pred, len(data.classes), category_indices(data.classes)),
        "loss": nll,
        "clips": int(len(y_true)),
        "per_class": per_class_metrics(y_true, y_pred, data.classes),
    }
