"""Data recipes: each turns its config into prepared clips; build_dataset adds cache, labels and splits."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from scopeml.config.schema import DataConfig, MixtureData, SourceData
from scopeml.data import cache
from scopeml.data.dataset import SPLITS, DataError, KeywordData
from scopeml.data.fingerprint import hash_config
from scopeml.data.labels import normalize_labels
from scopeml.data.splits import EVERY_FOLD, TEST_FOLD, SplitError, assign_folds, assign_speakers, check_fold_classes

__all__ = ["DataError", "KeywordData", "SPLITS", "build_dataset", "recipe_name"]
log = logging.getLogger(__name__)


def build_dataset(
    cfg: DataConfig, classes: list[str], progress: bool = True, tolerate_bad: bool = False
) -> KeywordData:
    """Prepared, labeled and split clips for `cfg`, from cache when nothing that shapes them changed.

    Unusable files are all collected first; then `data.on_bad_file` decides (error: one
    message naming every file; skip: drop them). `tolerate_bad` keeps going for reports.
    """
    if isinstance(cfg, MixtureData):
        return _build_mixture(cfg, classes, progress, tolerate_bad)
    manifest, waves, info = _load_or_make(cfg, progress)
    _apply_bad_file_policy(info["bad_files"], cfg.on_bad_file, tolerate_bad)

    labels, keep = normalize_labels(manifest["raw_label"], manifest["source"], cfg.labels, classes)
    manifest = manifest.assign(label=labels)[keep].reset_index(drop=True)
    waves = waves[keep]
    manifest["split"], folds = _split(manifest, cfg)
    if folds is not None:
        manifest["fold"] = folds
        _check_folds(manifest, classes)

    data = KeywordData(manifest=manifest, waves=waves, classes=list(classes), sample_rate=cfg.preprocess.sample_rate)
    data.bad_files = info["bad_files"]
    data.fingerprint = _fingerprint(cfg, info, data)
    return data


def recipe_name(cfg: DataConfig) -> str:
    """How caches, reports and W&B artifacts name a data set: "mixture", or its source class in snake case."""
    from scopeml.data import source

    return source.RECIPE_MIXTURE if isinstance(cfg, MixtureData) else source.recipe_name(cfg)


def _load_or_make(cfg: SourceData, progress: bool) -> tuple[pd.DataFrame, np.ndarray, dict]:
    from scopeml.data import source

    clips = source.build(cfg, progress)
    content_cfg = content_config(cfg)
    key = hash_config({"config": content_cfg, "source": source.source_info(cfg, clips), "version": cache.CACHE_VERSION})
    path = cache.cache_path(cfg.cache_dir, recipe_name(cfg), key)
    cached = cache.load(path)
    if cached is not None:
        manifest, waves, info = cached
        return manifest, waves, {**info, "cache": str(path), "cache_hit": True}
    manifest, waves, bad, content = source.make_clips(cfg, clips, progress=progress)
    info = {"content_sha256": content, "cache_key": key, "bad_files": bad}
    cache.store(path, manifest, waves, info)
    return manifest, waves, {**info, "cache": str(path), "cache_hit": False}


def _apply_bad_file_policy(bad: list[dict], policy: str, tolerate: bool) -> None:
    if not bad:
        return
    shown = "\n".join(f"  - {b['source']}: {b['problem']}" for b in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    if policy == "error" and not tolerate:
        raise DataError(f"{len(bad)} unusable audio file(s) (set data.on_bad_file=skip to drop them):\n{shown}{more}")
    log.warning("skipping %d unusable audio file(s):\n%s%s", len(bad), shown, more)


def _split(manifest: pd.DataFrame, cfg: DataConfig) -> tuple[pd.Series, pd.Series | None]:
    """(split, fold) of every clip. A manifest's own split column wins (scopeml-data checks it for leakage);
    otherwise split by speaker.

    With data.split.folds every non-test clip is "train" and `fold` numbers its speaker's fold
    (TEST_FOLD for test speakers); KeywordData.fold_view holds one fold out at a time. Without, fold is None.
    """
    own = "manifest_split" in manifest and manifest["manifest_split"].isin(SPLITS).all()
    try:
        if cfg.split.folds:
            own_test = manifest.loc[manifest["manifest_split"] == "test", "speaker"] if own else []
            folds = manifest["speaker"].map(assign_folds(manifest["speaker"], cfg.split, held_for_test=own_test))
            return pd.Series(np.where(folds == TEST_FOLD, "test", "train"), index=manifest.index), folds.astype(int)
        if own:
            return manifest["manifest_split"], None
        assignment = assign_speakers(manifest["speaker"], cfg.split)
    except SplitError as exc:
        raise DataError(str(exc)) from None
    return manifest["speaker"].map(assignment), None


def _check_folds(manifest: pd.DataFrame, classes: list[str]) -> None:
    if "fold" in manifest:
        try:
            check_fold_classes(manifest["label"], manifest["fold"], classes)
        except SplitError as exc:
            raise DataError(str(exc)) from None


def content_config(cfg: DataConfig) -> dict:
    """Everything in the data config that changes the prepared clips (not caching, labels, splits or checks)."""
    plain = dataclasses.asdict(cfg)
    for key in ("cache_dir", "split", "labels", "augment", "checks", "on_bad_file"):
        plain.pop(key, None)
    return plain


def _fingerprint(cfg: DataConfig, info: dict, data: KeywordData) -> dict:
    content_cfg = content_config(cfg)
    recipe_sha = hash_config([content_cfg, dataclasses.asdict(cfg.labels), dataclasses.asdict(cfg.split)])
    return {
        "recipe": recipe_name(cfg),
        "config_sha256": recipe_sha,
        "content_sha256": info["content_sha256"],
        "fingerprint": hash_config([recipe_sha, info["content_sha256"]])[:16],
        "cache": info.get("cache"),
        "clips": int(len(data.manifest)),
        "bad_files": len(info["bad_files"]),
        "splits": data.summary(),
    }


def _build_mixture(cfg: MixtureData, classes: list[str], progress: bool, tolerate_bad: bool) -> KeywordData:
    """Train on every component (scaled by its weight); validate and test on `eval_component` only."""
    parts, prints = [], {}
    rng = np.random.default_rng(cfg.split.seed)
    for name in sorted(cfg.components):
        part = build_dataset(cfg.components[name], classes, progress, tolerate_bad)
        manifest = part.manifest.assign(component=name)
        if name == cfg.eval_component and cfg.split.folds:
            # The mixture's folds deal the evaluation recipe's speakers; other components train in every fold.
            manifest["split"], manifest["fold"] = _split(manifest, cfg)
        if name != cfg.eval_component:
            # Only the evaluation recipe speaks for val/test: a mixture must be judged on real data.
            manifest["split"] = "train"
            if cfg.split.folds:
                manifest["fold"] = EVERY_FOLD
            weight = cfg.weights.get(name, 1.0)
            take = np.sort(
                rng.choice(
                    len(manifest), size=min(len(manifest), int(round(weight * len(manifest)))), replace=weight > 1.0
                )
            )
            manifest, waves = manifest.iloc[take].reset_index(drop=True), part.waves[take]
        else:
            waves = part.waves
        parts.append((manifest, waves))
        prints[name] = part.fingerprint
    manifest = pd.concat([m for m, _ in parts], ignore_index=True)
    _check_folds(manifest, classes)
    data = KeywordData(
        manifest=manifest,
        waves=np.concatenate([w for _, w in parts]),
        classes=list(classes),
        sample_rate=cfg.preprocess.sample_rate,
    )
    combined = hash_config([prints[n]["fingerprint"] for n in sorted(prints)] + [cfg.weights, cfg.eval_component])
    data.fingerprint = {
        "recipe": recipe_name(cfg),
        "config_sha256": hash_config([prints[n]["config_sha256"] for n in sorted(prints)] + [cfg.weights]),
        "content_sha256": hash_config([prints[n]["content_sha256"] for n in sorted(prints)]),
        "fingerprint": combined[:16],
        "components": prints,
        "clips": int(len(manifest)),
        "bad_files": sum(p.get("bad_files", 0) for p in prints.values()),
        "splits": data.summary(),
    }
    return data
