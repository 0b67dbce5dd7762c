"""An event detector for /segments and the edge runner: any class with `segments(samples, sr)` fills deploy.vad.

Sound events are not speech, so silero's speech model is the wrong gate here, and scopeml's energy gate
also drops any frame more than `relative_db` below the recording's loudest one (a soft hiss after a loud
buzz). This one keeps every stretch louder than an absolute floor, bridging gaps shorter than `min_gap_ms`.
"""

from __future__ import annotations

import numpy as np


class LoudnessGate:
    def __init__(self, floor_dbfs: float = -40.0, frame_ms: float = 10.0, min_gap_ms: float = 100.0):
        if floor_dbfs > 0:
            raise ValueError(f"floor_dbfs: must be <= 0 (dB below full scale), got {floor_dbfs!r}")
        self.floor_dbfs, self.frame_ms, self.min_gap_ms = float(floor_dbfs), float(frame_ms), float(min_gap_ms)

    def settings(self) -> dict:  # optional: what /info and edge.json report
        return {"_target_": f"{__name__}.LoudnessGate", **vars(self)}

    def segments(self, samples: np.ndarray, sr: int) -> list[tuple[int, int]]:
        """[start, end) sample ranges of the events in mono float audio."""
        hop = max(1, round(self.frame_ms * sr / 1000))
        frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
        loud = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12) >= self.floor_dbfs
        spans: list[list[int]] = []
        max_gap = round(self.min_gap_ms / self.frame_ms)
        for i in np.flatnonzero(loud):
            if spans and i - spans[-1][1] <= max_gap:
                spans[-1][1] = i + 1
            else:
                spans.append([i, i + 1])
        return [(int(start * hop), int(end * hop)) for start, end in spans]
