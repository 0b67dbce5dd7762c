"""The data set every later stage sees: clips shaped for the model, labels, speakers, splits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """A data problem that stops the run; the message names the key or files at fault."""


@dataclass
class KeywordData:
    manifest: pd.DataFrame  # one row per clip: clip_id, source, label, speaker, split, + recipe metadata
    waves: np.ndarray  # float32 (clips, samples) at the configured sample rate
    classes: list[str]
    sample_rate: int
    fingerprint: dict = field(default_factory=dict)
    bad_files: list[dict] = field(default_factory=list)  # files a tolerant build skipped, with the reason

    @property
    def targets(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return self.manifest["label"].map(index).to_numpy(dtype=np.int64)

    @property
    def folds(self) -> list[int]:
        """The cross-validation folds (data.split.folds), or [] when the data has one train/val/test split."""
        if "fold" not in self.manifest:
            return []
        return sorted(int(k) for k in self.manifest["fold"].unique() if k >= 0)

    def fold_view(self, k: int) -> KeywordData:
        """The same clips with fold k's speakers as the split "cv" (held out) and every other fold as "train"."""
        manifest = self.manifest.copy()
        manifest.loc[manifest["fold"].to_numpy() == k, "split"] = "cv"
        return replace(self, manifest=manifest)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.manifest["split"].to_numpy() == split)

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0):
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        idx = self.indices(split)
        # The third tensor is the row in the manifest, so per-clip logs (augmentation, errors) can name the clip.
        ds = TensorDataset(
            torch.from_numpy(np.ascontiguousarray(self.waves[idx])),
            torch.from_numpy(self.targets[idx]),
            torch.from_numpy(idx),
        )
        sampler = EpochShuffle(len(ds), seed) if shuffle else None
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=False)

    def summary(self) -> dict:
        out = {}
        for split in SPLITS:
            rows = self.manifest[self.manifest["split"] == split]
            out[split] = {
                "clips": int(len(rows)),
                "speakers": sorted(rows["speaker"].unique().tolist()),
                "per_class": {c: int((rows["label"] == c).sum()) for c in self.classes},
            }
        for k in self.folds:
            rows = self.manifest[self.manifest["fold"] == k]
            out.setdefault("folds", {})[str(k)] = {
                "clips": int(len(rows)),
                "speakers": sorted(rows["speaker"].unique().tolist()),
            }
        return out


class EpochShuffle:
    """A shuffling sampler whose order depends only on (seed, epoch).

    Lightning calls set_epoch before each epoch, so a run resumed from a checkpoint
    sees exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n
