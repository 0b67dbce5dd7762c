"""Error analysis of one run's predictions: where the model is wrong, on which clips, for which slices of the data.

Reads the frame `artifacts.save_predictions` writes and scores every slice with
`scopeml.metrics`, so a slice's accuracy means exactly what the run's accuracy means.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from scopeml.metrics import category_indices, classification_metrics, confusion_matrix, per_class_metrics

CATEGORICAL = ["speaker", "voice", "pitch", "rate", "augmented", "component"]
NUMERIC = ["duration_ms", "rms_dbfs", "loudness_lufs", "snr_db", "lead_ms", "trail_ms", "gain_db"]
MAX_CATEGORIES = 50  # beyond this a column is an identifier, not a slice; speakers are the exception we want
WORST_COLUMNS = ["clip_id", "source", "label", "pred", "confidence", "true_prob"]


def analyze(
    preds: pd.DataFrame,
    classes: list[str],
    out_dir: Path,
    target_accuracy: float | None = None,
    worst_n: int = 20,
    min_slice_size: int = 5,
) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    preds = preds.reset_index(drop=True)
    y_true, y_pred = _indices(preds["label"], classes, "label"), _indices(preds["pred"], classes, "pred")
    n_classes = len(classes)

    cm = confusion_matrix(y_true, y_pred, n_classes)
    cm_frame = pd.DataFrame(cm, index=pd.Index(classes, name="true"), columns=classes)
    cm_frame.to_csv(out_dir / "confusion_matrix.csv")
    _plot_confusion(cm, classes, out_dir / "confusion_matrix.png")

    per_class = per_class_metrics(y_true, y_pred, classes)
    pd.DataFrame.from_dict(per_class, orient="index").rename_axis("class").to_csv(out_dir / "per_class.csv")

    pairs = [
        {"true": classes[i], "pred": classes[j], "count": int(cm[i, j]), "share_of_true": float(cm[i, j] / cm[i].sum())}
        for i in range(n_classes)
        for j in range(n_classes)
        if i != j and cm[i, j] > 0
    ]
    pairs.sort(key=lambda p: -p["count"])  # stable: ties keep class order
    pd.DataFrame(pairs, columns=["true", "pred", "count", "share_of_true"]).to_csv(
        out_dir / "confused_pairs.csv", index=False
    )

    slices = []
    for column, keys in _slice_keys(preds):
        for value in keys.dropna().unique():
            rows = (keys == value).to_numpy()
            m = classification_metrics(y_true[rows], y_pred[rows], n_classes)
            n = int(rows.sum())
            below = target_accuracy is not None and n >= min_slice_size and m["accuracy"] < target_accuracy
            slices.append(
                {
                    "slice": column,
                    "value": str(value),
                    "n": n,
                    "accuracy": m["accuracy"],
                    "macro_f1": _num(m["macro_f1"]),
                    "below_target": bool(below),
                }
            )
    pd.DataFrame(slices, columns=["slice", "value", "n", "accuracy", "macro_f1", "below_target"]).to_csv(
        out_dir / "slices.csv", index=False
    )

    worst = _worst_examples(preds, y_true, y_pred, classes, worst_n)
    worst.to_csv(out_dir / "worst_examples.csv", index=False)

    return {
        "n": len(preds),
        "overall": {
            k: _num(v) for k, v in classification_metrics(y_true, y_pred, n_classes, category_indices(classes)).items()
        },
        "per_class": {name: {k: _num(v) for k, v in row.items()} for name, row in per_class.items()},
        "confused_pairs": pairs[:10],
        "slices": slices,
        "flagged_slices": [s for s in slices if s["below_target"]],
        "worst_examples": [{k: _py(v) for k, v in row.items()} for row in worst.to_dict("records")],
    }


def _indices(names: pd.Series, classes: list[str], what: str) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names.astype(str)) - lookup.keys())
    if unknown:
        raise ValueError(f"{what} values not among the classes {classes}: {unknown[:10]}")
    return names.astype(str).map(lookup).to_numpy(dtype=np.int64)


def _slice_keys(preds: pd.DataFrame):
    """(column, per-row slice key) pairs: categories as they are, numeric columns as quantile-bucket labels."""
    tags = sorted(c for c in preds.columns if c.startswith("tag_"))
    for column in [c for c in CATEGORICAL if c in preds.columns] + tags:
        keys = preds[column]
        if column == "speaker" or keys.nunique(dropna=True) <= MAX_CATEGORIES:
            yield column, keys
    for column in NUMERIC:
        if column in preds.columns and pd.api.types.is_numeric_dtype(preds[column]):
            keys = _quantile_buckets(preds[column].to_numpy(dtype=np.float64))
            if keys is not None:
                yield column, keys


def _quantile_buckets(x: np.ndarray, n_buckets: int = 4) -> pd.Series | None:
    """Up to n quantile buckets "[lo, hi)" (the last closed); NaN/inf rows get no bucket."""
    finite = np.isfinite(x)
    if len(np.unique(x[finite])) < 2:
        return None  # one value is the whole split again, not a slice
    # "lower" keeps edges on observed values, so labels name real clips and ties collapse edges.
    edges = np.unique(np.quantile(x[finite], np.linspace(0, 1, n_buckets + 1), method="lower"))
    labels = [
        f"[{_fmt(lo)}, {_fmt(hi)}{']' if k == len(edges) - 2 else ')'}"
        for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))
    ]
    which = np.searchsorted(edges[1:-1], x[finite], side="right")
    keys = pd.Series([None] * len(x), dtype=object)
    keys[finite] = [labels[k] for k in which]
    return keys


def _fmt(v: float) -> str:
    return f"{v:.1f}" if v == 0 or abs(v) >= 1 else f"{v:.2g}"


def _worst_examples(preds, y_true, y_pred, classes, worst_n) -> pd.DataFrame:
    """Confident errors first (what the model is surest about and wrong); then the shakiest correct clips."""
    probs = np.column_stack(
        [
            preds[f"prob_{c}"].to_numpy(dtype=np.float64)
            if f"prob_{c}" in preds.columns
            else np.full(len(preds), np.nan)
            for c in classes
        ]
    )
    table = pd.DataFrame(
        {
            "clip_id": preds["clip_id"] if "clip_id" in preds.columns else preds.index.astype(str),
            "source": preds["source"] if "source" in preds.columns else None,
            "label": preds["label"].astype(str),
            "pred": preds["pred"].astype(str),
            "confidence": preds["confidence"].to_numpy(dtype=np.float64)
            if "confidence" in preds.columns
            else probs.max(axis=1),
            "true_prob": probs[np.arange(len(preds)), y_true],
        }
    )
    wrong = y_true != y_pred
    errors = table[wrong].sort_values("confidence", ascending=False, kind="mergesort")
    shaky = table[~wrong].sort_values("true_prob", ascending=True, kind="mergesort")
    return pd.concat([errors, shaky]).head(worst_n).reset_index(drop=True)[WORST_COLUMNS]


def _plot_confusion(cm: np.ndarray, classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    size = max(4.0, 0.6 * len(classes) + 2.0)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(cm, cmap="Blues", vmin=0)
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xlabel="predicted class",
        ylabel="true class",
        title=f"Confusion matrix (n={int(cm.sum())}, accuracy {np.trace(cm) / max(cm.sum(), 1):.3f})",
    )
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > threshold else "black",
            )
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _num(v):
    """NaN (e.g. recall of a class absent from the split) becomes None: strict JSON has no NaN."""
    v = _py(v)
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _py(v):
    if isinstance(v, np.generic):
        v = v.item()
    return None if isinstance(v, float) and math.isnan(v) else v


def log_to_wandb(
    run, summary: dict, out_dir: Path, preds: pd.DataFrame, audio_lookup=None, key: str = "errors"
) -> None:
    """Log the confusion matrix, per-slice metrics, the worst examples (with audio if given) and all predictions.

    `run` is a wandb Run (e.g. Lightning's `logger.experiment`); offline runs work, nothing needs network.
    `audio_lookup(clip_id) -> (waveform, sample_rate)`; a clip it cannot find gets an empty audio cell.
    """
    import wandb

    out_dir = Path(out_dir)
    slice_cols = ["slice", "value", "n", "accuracy", "macro_f1", "below_target"]
    slices = wandb.Table(columns=slice_cols, data=[[s[c] for c in slice_cols] for s in summary.get("slices", [])])

    worst_cols = WORST_COLUMNS + (["audio"] if audio_lookup is not None else [])
    rows = []
    for ex in summary.get("worst_examples", []):
        row = [ex.get(c) for c in WORST_COLUMNS]
        if audio_lookup is not None:
            try:
                wave, sr = audio_lookup(ex["clip_id"])
                row.append(
                    wandb.Audio(
                        np.asarray(wave, dtype=np.float32).reshape(-1),
                        sample_rate=int(sr),
                        caption=f"{ex['label']} -> {ex['pred']}",
                    )
                )
            except (OSError, KeyError, LookupError, ValueError):
                row.append(None)  # one missing clip must not cost the whole table
        rows.append(row)
    worst = wandb.Table(columns=worst_cols, data=rows)

    base = [c for c in ["clip_id", "source", "speaker", "label", "pred", "confidence", "correct"] if c in preds.columns]
    frame = preds[base].copy()
    for c in ("clip_id", "source", "speaker", "label", "pred"):
        if c in frame.columns:
            frame[c] = frame[c].astype(str)  # W&B tables need one type per column
    payload = {
        f"{key}/slices": slices,
        f"{key}/worst_examples": worst,
        f"{key}/predictions": wandb.Table(dataframe=frame.reset_index(drop=True)),
    }
    if (out_dir / "confusion_matrix.png").exists():
        payload[f"{key}/confusion_matrix"] = wandb.Image(str(out_dir / "confusion_matrix.png"))
    run.log(payload)
    run.summary[f"{key}/flagged_slices"] = len(summary.get("flagged_slices", []))
