"""Data validation: is the data labeled consistently, balanced, unique, leak-free and well formed?

Each check returns a dict with `status` (pass / warn / fail), a one-line `summary`
and `details`; `blocking` says whether data.checks.blocking makes it fatal.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np
import pandas as pd

from scopeml.config.schema import ChecksConfig
from scopeml.data.dataset import SPLITS, KeywordData
from scopeml.data.preprocess import MEASURES

STATS = tuple(m for m in MEASURES if m != "silent")  # the measures with a distribution


def run_checks(data: KeywordData, cfg: ChecksConfig) -> dict:
    m = data.manifest
    exact, near = duplicate_pairs(data, cfg.near_duplicate_similarity)
    checks = [
        _unreadable(data.bad_files),
        _leakage(m, exact + near),
        _conflicting_labels(m, exact + near),
        _duplicates(m, exact, near),
        _too_few(m, data.classes, cfg, data.folds),
        _clipping(m, cfg.clipping_fraction),
        _silent(m),
    ]
    for check in checks:
        check["blocking"] = check["name"] in cfg.blocking
    failed = [c["name"] for c in checks if c["status"] == "fail" and c["blocking"]]
    return {
        "checks": checks,
        "blocking_failures": failed,
        "passed": not failed,
        "balance": {s: {c: int(((m["split"] == s) & (m["label"] == c)).sum()) for c in data.classes} for s in SPLITS},
        "speakers": {
            str(spk): {"clips": int(len(g)), "splits": sorted(g["split"].unique().tolist())}
            for spk, g in m.groupby("speaker")
        },
        "distributions": {k: _describe(m[k]) for k in STATS if k in m},
        "formats": {
            "sample_rates": {str(k): int(v) for k, v in m["orig_sample_rate"].value_counts().sort_index().items()}
            if "orig_sample_rate" in m
            else {},
            "channels": {str(k): int(v) for k, v in m["orig_channels"].value_counts().sort_index().items()}
            if "orig_channels" in m
            else {},
        },
    }


def duplicate_pairs(
    data: KeywordData, threshold: float
) -> tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    """Pairs (i, j, similarity) of exact duplicates (same preprocessed signal) and near duplicates.

    Pairs, not chained groups: a chain A~B~C says nothing about A and C, so conflicts
    and leakage are judged on directly similar pairs only.
    """
    by_hash = defaultdict(list)
    for i, wave in enumerate(data.waves):
        by_hash[hashlib.sha1(np.round(np.asarray(wave) * 32767).astype(np.int16).tobytes()).hexdigest()].append(i)
    exact = [(a, b, 1.0) for g in by_hash.values() for k, a in enumerate(g) for b in g[k + 1 :]]
    exact_set = {(a, b) for a, b, _ in exact}

    emb = fingerprints(data.waves, data.sample_rate)
    near = []
    for start in range(0, len(emb), 1024):
        sims = emb[start : start + 1024] @ emb.T
        for a, b in zip(*np.nonzero(sims >= threshold)):
            a = int(a) + start
            if a < b and (a, int(b)) not in exact_set:
                near.append((a, int(b), float(sims[a - start, b])))
    return exact, near


def fingerprints(waves: np.ndarray, sample_rate: int) -> np.ndarray:
    """Unit-length mel magnitude spectra (40 bands, 20 ms hops), independent of level.

    Magnitude, not log: on a log scale low-level noise in the pauses dominates, and a
    re-recorded copy of a clip stops looking like itself (measured: planted copies with
    gain, a 5 ms shift and 20 dB noise stay above 0.95, while pairs of different words
    from the built-in data stay below 0.93 at the 99.99th percentile).
    """
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=512, hop_length=sample_rate // 50, n_mels=40, power=1.0
    )
    out = []
    with torch.no_grad():
        for start in range(0, len(waves), 512):
            x = mel(torch.from_numpy(np.ascontiguousarray(waves[start : start + 512], dtype=np.float32))).flatten(1)
            out.append(torch.nn.functional.normalize(x, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def _groups(pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, _ in pairs:
        parent[find(a)] = find(b)
    groups = defaultdict(list)
    for i in parent:
        groups[find(i)].append(i)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def _rows(m: pd.DataFrame, group: list[int]) -> list[dict]:
    return [
        {
            "source": m.at[i, "source"],
            "label": m.at[i, "label"],
            "speaker": str(m.at[i, "speaker"]),
            "split": m.at[i, "split"],
        }
        for i in group
    ]


def _result(name: str, bad: bool, summary: str, details, severity: str = "fail") -> dict:
    return {"name": name, "status": severity if bad else "pass", "summary": summary, "details": details}


def _unreadable(bad_files: list[dict]) -> dict:
    return _result(
        "unreadable", bool(bad_files), f"{len(bad_files)} empty, corrupt or unreadable file(s)", bad_files[:200]
    )


def _pair(m: pd.DataFrame, a: int, b: int, sim: float) -> dict:
    return {"similarity": round(sim, 4), "clips": _rows(m, [a, b])}


def _leakage(m: pd.DataFrame, pairs: list[tuple[int, int, float]]) -> dict:
    """A speaker in two splits, or the same audio in two splits, makes the test score optimistic."""
    spk = m.groupby("speaker")["split"].nunique()
    speakers = sorted(str(s) for s in spk[spk > 1].index)
    split = m["split"].to_numpy()
    crossing = [_pair(m, a, b, s) for a, b, s in pairs if split[a] != split[b]]
    details = {"speakers_in_several_splits": speakers, "audio_in_several_splits": crossing[:50]}
    bad = bool(speakers or crossing)
    return _result(
        "leakage",
        bad,
        f"{len(speakers)} speaker(s) in several splits; {len(crossing)} duplicate pair(s) across splits",
        details,
    )


def _conflicting_labels(m: pd.DataFrame, pairs: list[tuple[int, int, float]]) -> dict:
    label = m["label"].to_numpy()
    conflicts = [_pair(m, a, b, s) for a, b, s in pairs if label[a] != label[b]]
    return _result(
        "conflicting_labels",
        bool(conflicts),
        f"{len(conflicts)} pair(s) of the same audio with different labels",
        conflicts[:50],
    )


def _duplicates(m: pd.DataFrame, exact, near) -> dict:
    exact_groups = _groups(exact)
    details = {"exact": [_rows(m, g) for g in exact_groups[:50]], "near": [_pair(m, a, b, s) for a, b, s in near[:50]]}
    n = sum(len(g) - 1 for g in exact_groups)
    return _result(
        "duplicates",
        bool(exact or near),
        f"{len(exact_groups)} exact-duplicate group(s) ({n} redundant clips), {len(near)} near-duplicate pair(s)",
        details,
        "warn",
    )


def _evaluated_groups(m: pd.DataFrame, folds: list[int]) -> dict[str, pd.Series]:
    """The groups of clips a model is trained or scored on: the three splits, or with cross-validation (folds from
    KeywordData.folds) the training pool, each held-out fold and the test split if there is one (val is empty by
    design there, and not a shortage)."""
    if not folds:
        return {split: m["split"] == split for split in SPLITS}
    groups = {"train": m["split"] == "train"}
    groups |= {f"fold {k}": m["fold"] == k for k in folds}
    if (m["split"] == "test").any():
        groups["test"] = m["split"] == "test"
    return groups


def _too_few(m: pd.DataFrame, classes: list[str], cfg: ChecksConfig, folds: list[int]) -> dict:
    short = []
    for split, rows in _evaluated_groups(m, folds).items():
        for label in classes:
            n = int((rows & (m["label"] == label)).sum())
            if n < cfg.min_clips_per_label:
                short.append({"split": split, "label": label, "clips": n, "minimum": cfg.min_clips_per_label})
    counts = m.groupby("speaker").size()
    few_speakers = [{"speaker": str(s), "clips": int(n)} for s, n in counts.items() if n < cfg.min_clips_per_speaker]
    details = {"labels": short, "speakers": few_speakers}
    return _result(
        "too_few_examples",
        bool(short or few_speakers),
        f"{len(short)} (split, label) pair(s) below {cfg.min_clips_per_label} clips; "
        f"{len(few_speakers)} speaker(s) below {cfg.min_clips_per_speaker}",
        details,
    )


def _clipping(m: pd.DataFrame, limit: float) -> dict:
    if "clipped_fraction" not in m:
        return _result("clipping", False, "not measured", [])
    bad = m[m["clipped_fraction"] > limit]
    return _result(
        "clipping",
        len(bad) > 0,
        f"{len(bad)} clip(s) with more than {limit:.1%} of samples at full scale",
        bad[["source", "clipped_fraction"]].head(50).to_dict("records"),
        "warn",
    )


def _silent(m: pd.DataFrame) -> dict:
    if "silent" not in m:
        return _result("silent", False, "not measured", [])
    bad = m[m["silent"].astype(bool)]
    return _result(
        "silent",
        len(bad) > 0,
        f"{len(bad)} clip(s) with no speech above the noise floor",
        bad[["source", "label"]].head(50).to_dict("records"),
        "warn",
    )


def _describe(series: pd.Series) -> dict:
    x = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    x = x[np.isfinite(x)]  # silent clips measure -inf dBFS; they are counted by the `silent` check
    if not len(x):
        return {"count": 0}
    q = np.percentile(x, [5, 50, 95])
    return {
        "count": int(len(x)),
        "mean": float(x.mean()),
        "min": float(x.min()),
        "p5": float(q[0]),
        "p50": float(q[1]),
        "p95": float(q[2]),
        "max": float(x.max()),
    }
