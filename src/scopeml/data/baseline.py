"""The numbers a model must beat: the majority class, logistic regression on MFCC statistics, and (optional,
`data.baseline.pocketsphinx`) an off-the-shelf recognizer restricted to the class words.

The best baseline is chosen on validation, never on test; test is reported beside it."""

from __future__ import annotations

import numpy as np

from scopeml.data.dataset import KeywordData
from scopeml.metrics import category_indices, classification_metrics

#: part of the data report's cache key: 2 chooses the best baseline on val (1 chose it on test)
VERSION = 2

#: where the best baseline is chosen: the first of these splits that has clips (val; "cv" where a
#: cross-validated data set has no val split; test only when there is nothing else)
CHOICE_SPLITS = ("val", "cv", "test")


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


def choose_best(scores: dict[str, dict], clips: dict[str, int]) -> tuple[str, str]:
    """(baseline, split it was chosen on): the highest accuracy on the first split in CHOICE_SPLITS with clips.

    `scores` maps baseline name -> {split: metrics}; `clips` maps split -> number of clips. Ties go to the
    first name (the simpler baseline, when names are listed simplest first); so does a data set with no clips
    in any of those splits (nothing to choose on: the split is then None)."""
    split = next((s for s in CHOICE_SPLITS if clips.get(s, 0) > 0), None)
    if split is None:
        return next(iter(scores)), None
    return max(scores, key=lambda name: scores[name][split]["accuracy"]), split


def cannot_fit(y_train: np.ndarray, classes: list[str]) -> str | None:
    """Why a classifier cannot be fitted on these training labels (fewer than two classes), or None."""
    present = sorted({classes[i] for i in np.unique(y_train)})
    if len(present) >= 2:
        return None
    have = f"only {present[0]!r}" if present else "no clips"
    return f"the training split has {have} ({len(y_train)} clip(s)); a classifier needs at least two classes"


def logreg_model(seed: int = 0):
    """The logistic-regression baseline's model (on mfcc_stats features), unfitted."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))


def compute(data: KeywordData, seed: int = 0, pocketsphinx: bool = False, unknown: str | None = None) -> dict:
    """Scores of the baselines on val and test (speaker-disjoint, like every model), and the best one, chosen on
    val (see CHOICE_SPLITS). `pocketsphinx` adds the recognizer baseline; `unknown` is data.labels.unknown."""
    y = data.targets
    train = data.indices("train")
    evals = {s: data.indices(s) for s in CHOICE_SPLITS if s != "cv" or len(data.indices(s))}  # val, test always
    n, categories = len(data.classes), category_indices(data.classes)
    majority = int(np.bincount(y[train], minlength=n).argmax())
    result = {"majority": {"class": data.classes[majority]}, "logreg_mfcc": {"features": "mean+std of 20 MFCCs"}}
    for split, idx in evals.items():
        result["majority"][split] = classification_metrics(y[idx], np.full(len(idx), majority), n, categories)

    names = ["majority"]
    unfit = cannot_fit(y[train], data.classes)
    if unfit:  # a tiny or lopsided data set: say why instead of failing inside scikit-learn
        result["logreg_mfcc"]["skipped"] = unfit
    else:
        feats = mfcc_stats(data.waves, data.sample_rate)
        model = logreg_model(seed)
        model.fit(feats[train], y[train])
        for split, idx in evals.items():
            predicted = model.predict(feats[idx]) if len(idx) else np.zeros(0, dtype=np.int64)  # cv runs: no val
            result["logreg_mfcc"][split] = classification_metrics(y[idx], predicted, n, categories)
        names.append("logreg_mfcc")
    if pocketsphinx:
        from scopeml.data import recognizer  # imports pocketsphinx: only when the option is on

        result["pocketsphinx"] = recognizer.scores(data, evals, unknown)
        names.append("pocketsphinx")
    result["best"], result["chosen_on"] = choose_best(
        {k: result[k] for k in names}, {s: len(idx) for s, idx in evals.items()}
    )
    return result


def lift(model_scores: dict, baseline: dict, split: str = "test") -> dict:
    """How far the model is above the best baseline (chosen on val: baseline["best"]) on `split`, by metric."""
    ref = baseline[baseline["best"]][split]
    return {k: model_scores[k] - ref[k] for k in ("accuracy", "macro_f1") if k in model_scores and k in ref}
