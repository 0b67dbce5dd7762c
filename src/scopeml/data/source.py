"""A user's own data source (data.recipe=source): a class that lists clips; scopeml does the rest.

The source is a `_target_` component. Its `clips()` (or the object itself, if iterable) yields
one mapping (or object with attributes) per clip:

    label        the raw label (mapped to scoping classes by data.labels, like every recipe)
    path         an audio file (WAV/FLAC), or
    samples      the audio as an array, with sample_rate
    speaker      optional: who speaks (splits keep speakers apart; default: one per clip)
    clip_id      optional: a name for the clip in reports (default: the file name or its index)
    tag_*        optional: any metadata kept in the manifest (slices in error analysis)

scopeml decodes, measures, preprocesses, caches, checks, splits and augments exactly as for the
built-in recipes. The cache is keyed on the source's `fingerprint()` if it has one, otherwise on
the listing (paths, sizes and modification times; the samples themselves for in-memory clips).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scopeml.config.schema import SourceData
from scopeml.data.dataset import DataError
from scopeml.data.files import Entry, read_entries
from scopeml.data.fingerprint import hash_array, hash_config

FIELDS = ("label", "path", "samples", "sample_rate", "speaker", "clip_id")


def list_clips(cfg: SourceData, source: Any = None) -> list[dict]:
    """The source's clips as plain dicts, each checked; a DataError names the first bad ones."""
    source = _build(cfg) if source is None else source
    items = source.clips() if hasattr(source, "clips") else source
    try:
        clips = [_as_dict(item) for item in items]
    except TypeError as exc:
        raise DataError(f"data.source: {cfg.source['_target_']} must have clips() or be iterable ({exc})") from None
    problems = [p for i, clip in enumerate(clips) if (p := _problem(clip, i))]
    if problems:
        more = f" ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise DataError(
            f"data.source: {cfg.source['_target_']} listed {len(problems)} unusable clip(s): "
            + "; ".join(problems[:5])
            + more
        )
    if not clips:
        raise DataError(f"data.source: {cfg.source['_target_']} listed no clips")
    return clips


def source_info(cfg: SourceData) -> dict:
    """What decides the prepared clips besides the config: the source's own fingerprint, or its listing."""
    source = _build(cfg)
    if hasattr(source, "fingerprint"):
        return {"fingerprint": str(source.fingerprint())}
    listing = []
    for i, clip in enumerate(list_clips(cfg, source)):
        if "path" in clip:
            path = Path(clip["path"])
            stat = path.stat() if path.exists() else None
            listing.append(
                [str(path), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1, str(clip["label"])]
            )
        else:
            samples = np.asarray(clip["samples"], dtype=np.float32)
            listing.append([i, hash_array(samples), clip["sample_rate"], str(clip["label"])])
    return {"listing_sha256": hash_config(listing)}


def _build(cfg: SourceData) -> Any:
    from scopeml.components import build

    return build(cfg.source, "data.source")


def make_clips(cfg: SourceData, progress: bool = True) -> tuple[pd.DataFrame, np.ndarray, list[dict]]:
    """Every clip through the same reading, measuring and preprocessing as files of the built-in recipes."""
    target = cfg.source["_target_"]
    entries = []
    for i, clip in enumerate(list_clips(cfg)):
        label, extra = str(clip["label"]), _extra(clip)
        if "path" in clip:
            entries.append(Entry(Path(clip["path"]), label, str(clip.get("speaker") or f"clip-{i}"), extra))
            continue
        name = str(clip.get("clip_id") or f"clip-{i}")
        audio = {"samples": clip["samples"], "sample_rate": clip["sample_rate"]}
        entries.append(
            Entry(None, label, str(clip.get("speaker") or name), extra, **audio, name=name, origin=f"{target}[{name}]")
        )
    return read_entries(entries, cfg, progress, "source clips")


def content_hash(cfg: SourceData, manifest: pd.DataFrame, waves: np.ndarray) -> str:
    return hash_array(waves)


def _as_dict(item: Any) -> dict:
    if isinstance(item, dict):
        return dict(item)
    return {k: getattr(item, k) for k in dir(item) if k in FIELDS or k.startswith("tag_")}


def _problem(clip: dict, index: int) -> str | None:
    name = clip.get("clip_id") or clip.get("path") or f"clip {index}"
    if "label" not in clip or clip["label"] is None or str(clip["label"]).strip() == "":
        return f"{name}: no label"
    if "path" not in clip and ("samples" not in clip or "sample_rate" not in clip):
        return f"{name}: needs `path`, or `samples` with `sample_rate`"
    return None


def _extra(clip: dict) -> dict:
    return {k: v for k, v in clip.items() if k.startswith("tag_")}
