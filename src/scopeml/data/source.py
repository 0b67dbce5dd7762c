"""Data sources (data.source): a `_target_` class that lists clips; scopeml does the rest.

Every data set is one: the built-in ones (scopeml.data.fsdd.FSDD, scopeml.data.synth.SynthKeywords,
scopeml.data.speech_commands.SpeechCommands, scopeml.data.manifest.Manifest) are ordinary
examples of the contract a user's class fills. The source's `clips()` (or the object itself, if
iterable) yields one mapping (or object with attributes) per clip:

    label        the raw label (mapped to scoping classes by data.labels)
    path         an audio file (WAV/FLAC), or
    samples      the audio as an array, with sample_rate
    speaker      optional: who speaks (splits keep speakers apart; default: one per clip)
    clip_id      optional: a name for the clip in reports (default: the file name or its index)
    problem      optional: why this clip is unusable; it is reported like an unreadable file
                 and data.on_bad_file decides (a file named against the data set's convention)
    anything else: metadata kept as a manifest column (slices in error analysis), e.g. tag_room

scopeml decodes, measures, preprocesses, caches, checks, splits and augments every clip the same
way. The cache is keyed on the source's `fingerprint()` if it has one (a source that generates
its audio must have one, or it would generate twice), otherwise on the listing (paths, sizes and
modification times; the samples themselves for in-memory clips). If the constructor takes
`progress`, scopeml passes the command's progress-bar setting.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scopeml.config.schema import SourceData
from scopeml.data.dataset import DataError
from scopeml.data.files import Entry, read_entries
from scopeml.data.fingerprint import hash_array, hash_config, hash_files
from scopeml.data.preprocess import MEASURES

FIELDS = ("label", "path", "samples", "sample_rate", "speaker", "clip_id", "problem")
# Columns scopeml writes itself: a source's metadata may not reuse their names.
RESERVED = {
    *FIELDS,
    "source",
    "raw_label",
    "split",
    "fold",
    "component",
    "augmented",
    "orig_sample_rate",
    "orig_channels",
    *MEASURES,
}


def build(cfg: SourceData, progress: bool = True) -> Any:
    from scopeml.components import build as build_component

    return build_component(cfg.source, "data.source", progress=progress)


RECIPE_MIXTURE = "mixture"


def recipe_name(cfg: SourceData) -> str:
    """A short name for caches, reports and W&B artifacts: the source class in snake case (FSDD -> fsdd)."""
    return snake_name(str(cfg.source["_target_"]))


def snake_name(target: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", target.rpartition(".")[2]).lower()


def list_clips(cfg: SourceData, source: Any) -> list[dict]:
    """The source's clips as plain dicts, each checked; a DataError names the first bad ones."""
    target = cfg.source["_target_"]
    items = source.clips() if hasattr(source, "clips") else source
    try:
        clips = [_as_dict(item) for item in items]
    except TypeError as exc:
        raise DataError(f"data.source: {target} must have clips() or be iterable ({exc})") from None
    problems = [p for i, clip in enumerate(clips) if (p := _problem(clip, i))]
    if problems:
        more = f" ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise DataError(
            f"data.source: {target} listed {len(problems)} unusable clip(s): " + "; ".join(problems[:5]) + more
        )
    if not clips:
        raise DataError(f"data.source: {target} listed no clips")
    return clips


def source_info(cfg: SourceData, source: Any) -> dict:
    """What decides the prepared clips besides the config: the source's own fingerprint, or its listing."""
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


def make_clips(cfg: SourceData, source: Any, progress: bool = True) -> tuple[pd.DataFrame, np.ndarray, list[dict], str]:
    """Every clip read, measured and preprocessed. Returns (manifest, waves, unusable clips, content digest).

    The content digest is over the files' bytes by their names relative to the files' common folder
    (independent of where that folder lives) when every clip is a file, else over the prepared audio.
    """
    target = cfg.source["_target_"]
    entries, bad = [], []
    for i, clip in enumerate(list_clips(cfg, source)):
        label, extra = str(clip["label"]), _extra(clip)
        if clip.get("problem"):
            bad.append(
                {
                    "source": str(clip.get("path") or clip.get("clip_id") or f"{target}[{i}]"),
                    "problem": str(clip["problem"]),
                }
            )
            continue
        if "path" in clip:
            path = Path(clip["path"])
            name = str(clip["clip_id"]) if clip.get("clip_id") else None
            entries.append(Entry(path, label, str(clip.get("speaker") or f"clip-{i}"), extra, name=name))
            continue
        name = str(clip.get("clip_id") or f"clip-{i}")
        audio = {"samples": clip["samples"], "sample_rate": clip["sample_rate"]}
        entries.append(
            Entry(None, label, str(clip.get("speaker") or name), extra, **audio, name=name, origin=f"{target}[{name}]")
        )
    manifest, waves, unreadable = read_entries(entries, cfg, progress, recipe_name(cfg).replace("_", " "))
    files = [e.path for e in entries if e.path is not None]
    if len(manifest) and len(files) == len(entries):
        kept = [Path(p).resolve() for p in manifest["source"]]
        digest = hash_files(kept, os.path.commonpath([p.parent for p in kept]))
    else:
        digest = hash_array(waves)
    return manifest, waves, bad + unreadable, digest


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
    clash = sorted(k for k in clip if k in RESERVED - set(FIELDS))
    if clash:
        return f"{name}: metadata field(s) {clash} are columns scopeml writes itself; rename them (e.g. tag_{clash[0]})"
    return None


def _extra(clip: dict) -> dict:
    return {k: v for k, v in clip.items() if k not in RESERVED}
