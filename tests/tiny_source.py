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


class FirstTakes:
    """A user's variant of a built-in data set: FSDD's clips, first takes only, tagged with the take.

    Built-in sources are ordinary classes, so a user wraps (or subclasses) one from their own package.
    """

    def __init__(self, root: str):
        from scopeml.data.fsdd import FSDD

        self.fsdd = FSDD(root)

    def clips(self):
        for clip in self.fsdd.clips():
            if clip.get("take") == 0:
                yield {**clip, "tag_first": True}


class Flawed:
    """Clips a source itself knows to be unusable (`problem`), beside good ones."""

    def __init__(self, clash: bool = False):
        self.clash = clash

    def clips(self):
        t = np.arange(8000) / 16000
        for i in range(8):
            yield {
                "label": "yes" if i % 2 else "no",
                "samples": (0.3 * np.sin(2 * np.pi * (300 + 200 * (i % 2)) * t)).astype(np.float32),
                "sample_rate": 16000,
                "speaker": f"s{i % 4}",
                "clip_id": f"c{i}",
                **({"split": "train"} if self.clash and i == 3 else {}),
            }
        yield {
            "label": "yes",
            "clip_id": "c-broken",
            "samples": np.zeros(10),
            "sample_rate": 16000,
            "problem": "mic cut out",
        }
