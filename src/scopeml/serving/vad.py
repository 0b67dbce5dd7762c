"""Voice activity detection in front of the classifier, as a phone's VAD module selects speech first."""

from __future__ import annotations

import numpy as np


def find_segments(
    x: np.ndarray,
    sr: int,
    floor_dbfs: float = -45.0,
    relative_db: float = -30.0,
    frame_ms: float = 20.0,
    min_speech_ms: float = 120.0,
    min_gap_ms: float = 250.0,
    pad_ms: float = 80.0,
) -> list[tuple[int, int]]:
    """Sample ranges [start, end) of voiced regions.

    A frame is voiced when it is above an absolute floor (so silence-only audio has no
    segments, rather than its loudest hiss being called speech) and within `relative_db`
    of the loudest frame. Gaps shorter than `min_gap_ms` are bridged (the pause inside
    "stop" is not two words); segments shorter than `min_speech_ms` are dropped as clicks.
    """
    n = max(int(sr * frame_ms / 1000), 1)
    if len(x) < n:
        return []
    frames = x[: len(x) // n * n].reshape(-1, n)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    voiced = (level > floor_dbfs) & (level > level.max() + relative_db)
    segments: list[list[int]] = []
    gap_frames, min_frames = int(min_gap_ms / frame_ms), max(int(min_speech_ms / frame_ms), 1)
    for i in np.flatnonzero(voiced):
        if segments and i - segments[-1][1] <= gap_frames:
            segments[-1][1] = i + 1
        else:
            segments.append([i, i + 1])
    pad = int(pad_ms / 1000 * sr)
    return [(max(a * n - pad, 0), min(b * n + pad, len(x))) for a, b in segments if b - a >= min_frames]
