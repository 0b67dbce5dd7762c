"""A user's own data source: synthetic sound events, made in memory and deterministic.

scopeml builds it from conf/data/sound_events.yaml and calls `clips()`; it prepares, checks,
caches, splits (by `speaker`) and augments the clips like any built-in recipe.
"""

from __future__ import annotations

import numpy as np

KINDS = ("whistle", "buzz", "hiss")


def render(kind: str, pitch_hz: float, sample_rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One event: a rising whistle, a square-wave buzz or band noise, inside a little silence."""
    n = int(sample_rate * seconds)
    t = np.arange(n) / sample_rate
    if kind == "whistle":
        wave = np.sin(2 * np.pi * (pitch_hz * 2 * t + pitch_hz * 2 * t**2))
    elif kind == "buzz":
        wave = np.sign(np.sin(2 * np.pi * pitch_hz * t)) * 0.5
    else:
        wave = rng.normal(0.0, 0.3, n)
    envelope = np.clip(np.minimum(t, seconds - t) * 20, 0, 1)
    start = int(rng.integers(0, sample_rate // 4))
    out = np.zeros(int(sample_rate * 1.0), dtype=np.float32)
    clip = (wave * envelope * rng.uniform(0.2, 0.8)).astype(np.float32)[: len(out) - start]
    out[start : start + len(clip)] = clip
    return out + rng.normal(0.0, 0.005, len(out)).astype(np.float32)


class SoundEvents:
    """`sources` fake recording devices (the "speakers"), `per_kind` events of each kind from each."""

    def __init__(self, sources: int, per_kind: int, sample_rate: int = 16000, seed: int = 0):
        self.sources, self.per_kind, self.sample_rate, self.seed = sources, per_kind, sample_rate, seed

    def clips(self):
        for source in range(self.sources):
            rng = np.random.default_rng([self.seed, source])
            pitch = 150.0 + 40.0 * source  # each device hears events a little differently
            for kind in KINDS:
                for i in range(self.per_kind):
                    yield {
                        "label": kind,
                        "samples": render(kind, pitch * rng.uniform(0.9, 1.1), self.sample_rate, 0.6, rng),
                        "sample_rate": self.sample_rate,
                        "speaker": f"device{source}",
                        "clip_id": f"device{source}-{kind}-{i}",
                    }

    def fingerprint(self) -> str:
        """Deterministic from the arguments: the cache needs nothing else."""
        return f"sound-events-v1-{self.sources}-{self.per_kind}-{self.sample_rate}-{self.seed}"
