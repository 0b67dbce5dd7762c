"""Score a trained model on a split with the shared metric definitions."""

from __future__ import annotations

import numpy as np
import torch

from scopeml.data import KeywordData
from scopeml.metrics import classification_metrics, per_class_metrics


@torch.no_grad()
def predict_proba(model: torch.nn.Module, data: KeywordData, split: str, batch_size: int = 256) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    chunks = [torch.softmax(model(waves.to(device)), dim=-1).cpu() for waves, *_ in data.loader(split, batch_size)]
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, len(data.classes)), dtype=np.float32)


def score(data: KeywordData, split: str, probs: np.ndarray) -> dict:
    y_true = data.targets[data.indices(split)]
    y_pred = probs.argmax(axis=1)
    eps = 1e-12
    nll = float(-np.mean(np.log(probs[np.arange(len(y_true)), y_true] + eps))) if len(y_true) else float("nan")
    return {
        **classification_metrics(y_true, y_pred, len(data.classes)),
        "loss": nll,
        "clips": int(len(y_true)),
        "per_class": per_class_metrics(y_true, y_pred, data.classes),
    }
