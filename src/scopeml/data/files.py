"""Reading a list of audio files into prepared clips, measuring each on the way.

Every recipe that reads files goes through here, so bad files are handled one
way: collected with the reason, never a crash half-way through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scopeml.config.schema import DataConfig
from scopeml.data import preprocess
from scopeml.data.audio import AudioError, read_audio, to_mono


@dataclass
class Entry:
    path: Path
    raw_label: str
    speaker: str
    extra: dict = field(default_factory=dict)


def read_entries(
    entries: list[Entry], cfg: DataConfig, progress: bool, what: str
) -> tuple[pd.DataFrame, np.ndarray, list[dict]]:
    """Decode, measure and preprocess each file. Returns (manifest, waves, bad files)."""
    n_out = int(round(cfg.preprocess.clip_seconds * cfg.preprocess.sample_rate))
    rows, waves, bad = [], [], []
    for entry in _track(entries, f"Reading {what}", progress):
        try:
            samples, sr = read_audio(entry.path)
        except AudioError as exc:
            bad.append({"source": str(entry.path), "problem": exc.problem})
            continue
        stats = preprocess.measure(to_mono(samples), sr, cfg.preprocess.trim.threshold_db)
        waves.append(preprocess.apply(samples, sr, cfg.preprocess))
        rows.append(
            {
                "clip_id": entry.path.stem,
                "source": str(entry.path),
                "raw_label": entry.raw_label,
                "speaker": entry.speaker,
                "orig_sample_rate": sr,
                "orig_channels": int(samples.shape[0]),
                **stats,
                **entry.extra,
            }
        )
    manifest = pd.DataFrame(rows)
    stacked = np.stack(waves) if waves else np.zeros((0, n_out), dtype=np.float32)
    return manifest, stacked, bad


def _track(items, description: str, enabled: bool):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)
