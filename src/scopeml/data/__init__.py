"""Data recipes: each turns its config into prepared clips; build_dataset adds cache, labels and splits."""

from __future__ import annotations

import dataclasses
from types import ModuleType

from scopeml.config.schema import DataConfig
from scopeml.data import cache
from scopeml.data.dataset import SPLITS, DataError, KeywordData
from scopeml.data.fingerprint import hash_config
from scopeml.data.splits import SplitError, assign_speakers

__all__ = ["DataError", "KeywordData", "SPLITS", "build_dataset", "recipe_module"]


def recipe_module(recipe: str) -> ModuleType:
    """Recipes are modules with source_info(cfg), make_clips(cfg, progress) and content_hash(cfg, manifest, waves)."""
    from scopeml.data import fsdd, synth

    return {"synth_keywords": synth, "fsdd": fsdd}[recipe]


def build_dataset(cfg: DataConfig, classes: list[str], progress: bool = True) -> KeywordData:
    recipe = recipe_module(cfg.recipe)
    content_cfg = _content_config(cfg)
    key = hash_config({"config": content_cfg, "source": recipe.source_info(cfg), "version": cache.CACHE_VERSION})
    path = cache.cache_path(cfg.cache_dir, cfg.recipe, key)
    cached = cache.load(path)
    if cached is None:
        manifest, waves = recipe.make_clips(cfg, progress=progress)
        info = {"content_sha256": recipe.content_hash(cfg, manifest, waves), "cache_key": key}
        cache.store(path, manifest, waves, info)
    else:
        manifest, waves, info = cached

    manifest = manifest.copy()
    manifest["label"] = _map_labels(manifest, cfg.label_map, classes)
    try:
        assignment = assign_speakers(manifest["speaker"], cfg.split)
    except SplitError as exc:
        raise DataError(str(exc)) from None
    manifest["split"] = manifest["speaker"].map(assignment)

    data = KeywordData(manifest=manifest, waves=waves, classes=list(classes), sample_rate=cfg.audio.sample_rate)
    data.fingerprint = {
        "recipe": cfg.recipe,
        "config_sha256": hash_config(content_cfg),
        "content_sha256": info["content_sha256"],
        "fingerprint": hash_config([hash_config(content_cfg), info["content_sha256"], dataclasses.asdict(cfg.split)])[:16],
        "cache": str(path),
        "clips": int(len(manifest)),
        "splits": data.summary(),
    }
    return data


def _content_config(cfg: DataConfig) -> dict:
    """Everything in the data config that changes the clips (not where they are cached, not the split)."""
    plain = dataclasses.asdict(cfg)
    for key in ("cache_dir", "split", "label_map"):
        plain.pop(key, None)
    return plain


def _map_labels(manifest, label_map: dict[str, str], classes: list[str]):
    labels = manifest["raw_label"].astype(str).map(lambda raw: label_map.get(raw, raw))
    outside = ~labels.isin(classes)
    if outside.any():
        examples = manifest.loc[outside, ["source", "raw_label"]].head(5).itertuples(index=False)
        listing = "; ".join(f"{src} has label {raw!r}" for src, raw in examples)
        raise DataError(
            f"{int(outside.sum())} clip(s) have labels outside scoping.classes {classes} "
            f"(map them with data.label_map): {listing}"
        )
    return labels
