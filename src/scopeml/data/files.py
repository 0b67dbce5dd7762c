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
from scopeml.data.audio import AudioError, check_samples, read_audio, to_mono


@dataclass
class Entry:
    path: Path | None  # an audio file, or None for audio held in memory (`samples`)
    raw_label: str
    speaker: str
    extra: dict = field(default_factory=dict)
    samples: np.ndarray | None = None  # in-memory audio from a user's data source, (frames,) or (channels, frames)
    sample_rate: int | None = None
    name: str | None = None  # clip id (default for a file: its name without the extension)
    origin: str | None = None  # how reports name in-memory audio, e.g. "mypkg.Clips[clip-3]"

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else str(self.origin)

    @property
    def clip_id(self) -> str:
        return str(self.name) if self.name else self.path.stem

    def load(self) -> tuple[np.ndarray, int]:
        """(channels, frames) float32 samples and their rate; AudioError naming the clip when unusable."""
        if self.samples is None:
            return read_audio(self.path)
        try:
            samples, sr = np.atleast_2d(np.asarray(self.samples, dtype=np.float32)), int(self.sample_rate)
        except (TypeError, ValueError) as exc:
            raise AudioError(self.source, f"samples or sample_rate are not numbers ({exc})") from None
        if samples.ndim > 2:
            shape = f"samples have {samples.ndim} dimensions; expected (frames,) or (channels, frames)"
            raise AudioError(self.source, shape)
        return check_samples(samples, self.source), sr


def read_entries(
    entries: list[Entry], cfg: DataConfig, progress: bool, what: str
) -> tuple[pd.DataFrame, np.ndarray, list[dict]]:
    """Decode (or take), measure and preprocess each clip. Returns (manifest, waves, bad clips)."""
    n_out = int(round(cfg.preprocess.clip_seconds * cfg.preprocess.sample_rate))
    rows, waves, bad = [], [], []
    for entry in _track(entries, f"Reading {what}", progress):
        try:
            samples, sr = entry.load()
        except AudioError as exc:
            bad.append({"source": entry.source, "problem": exc.problem})
            continue
        stats = preprocess.measure(to_mono(samples), sr, cfg.preprocess.trim.threshold_db)
        waves.append(preprocess.apply(samples, sr, cfg.preprocess))
        rows.append(
            {
                "clip_id": entry.clip_id,
                "source": entry.source,
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
