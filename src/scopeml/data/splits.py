"""Speaker-disjoint splits: a test voice is never heard in training."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from scopeml.config.schema import SplitConfig


class SplitError(ValueError):
    pass


def assign_speakers(speakers: Iterable[str], cfg: SplitConfig) -> dict[str, str]:
    """Map every speaker to train, val or test; explicit lists first, fractions for the rest."""
    unique = sorted(set(speakers))
    for key in ("val_speakers", "test_speakers"):
        unknown = sorted(set(getattr(cfg, key)) - set(unique))
        if unknown:
            raise SplitError(f"data.split.{key}: unknown speaker(s) {unknown}; the data has {unique}")
    if len(unique) < 3:
        raise SplitError(f"data.split: need at least 3 speakers for speaker-disjoint train/val/test, found {unique}")

    rng = np.random.default_rng(cfg.seed)
    rest = [s for s in unique if s not in cfg.val_speakers and s not in cfg.test_speakers]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    test = list(cfg.test_speakers) or _take(rest, cfg.test_fraction, len(unique))
    val = list(cfg.val_speakers) or _take(rest, cfg.val_fraction, len(unique))
    if not rest:
        raise SplitError("data.split: no speakers left for training; lower val/test fractions or list fewer speakers")
    assignment = {s: "train" for s in rest}
    assignment.update({s: "val" for s in val})
    assignment.update({s: "test" for s in test})
    return assignment


def _take(pool: list[str], fraction: float, total: int) -> list[str]:
    n = max(1, int(round(fraction * total)))
    taken, pool[:] = pool[:n], pool[n:]
    return taken
