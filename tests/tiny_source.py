"""A minimal user data source for tests: tones of two pitches from a few 'speakers'."""

from __future__ import annotations

import numpy as np


class Tones:
    def __init__(self, speakers: int = 6, per_label: int = 4, sample_rate: int = 16000):
        self.speakers, self.per_label, self.sample_rate = speakers, per_label, sample_rate

    def clips(self):
        t = np.arange(int(0.5 * self.sample_rate)) / self.sample_rate
        for s in range(self.speakers):
            for label, freq in (("yes", 300.0), ("no", 2000.0)):
                for i in range(self.per_label):
                    yield {
                        "label": label,
                        "samples": (0.3 * np.sin(2 * np.pi * freq * (1 + 0.01 * s) * t)).astype(np.float32),
                        "sample_rate": self.sample_rate,
                        "speaker": f"s{s}",
                        "clip_id": f"s{s}-{label}-{i}",
                    }
