"""Speaker-disjoint splits: a test voice is never heard in training."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from scopeml.config.schema import SplitConfig


class SplitError(ValueError):
    pass


TEST_FOLD = -1  # a "fold" column value: held out for the final test, never trained on in any fold
EVERY_FOLD = -2  # trained on in every fold, never held out (a mixture's components other than eval_component)


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


def assign_folds(speakers: Iterable[str], cfg: SplitConfig, held_for_test: Iterable[str] = ()) -> dict[str, int]:
    """Speaker -> fold number for speaker-grouped k-fold cross-validation (test speakers get -1).

    Speakers are shuffled with cfg.seed and dealt round-robin, so fold sizes differ by at most one
    speaker; with folds equal to the number of speakers this is leave-one-speaker-out.
    """
    unique = sorted(set(speakers))
    unknown = sorted(set(cfg.test_speakers) - set(unique))
    if unknown:
        raise SplitError(f"data.split.test_speakers: unknown speaker(s) {unknown}; the data has {unique}")
    test = set(cfg.test_speakers) | set(held_for_test)
    pool = [s for s in unique if s not in test]
    if cfg.folds > len(pool):
        raise SplitError(
            f"data.split.folds={cfg.folds}: only {len(pool)} speaker(s) to deal into folds ({pool}); "
            f"folds can be at most {len(pool)} (that is leave-one-speaker-out)"
        )
    rng = np.random.default_rng(cfg.seed)
    order = [pool[i] for i in rng.permutation(len(pool))]
    folds = {s: i % cfg.folds for i, s in enumerate(order)}
    folds.update({s: TEST_FOLD for s in test})
    return folds


def check_fold_classes(labels: Iterable[str], folds: Iterable[int], classes: list[str]) -> None:
    """Every class must be heard in each fold's held-out speakers and in its training folds, or that fold's
    score is about fewer classes than the model's. Raises SplitError naming data.split.folds."""
    table = np.array(list(zip(folds, labels)), dtype=object)
    if not len(table):
        return
    problems = []
    for k in sorted({int(f) for f in table[:, 0] if f >= 0}):
        held = set(table[table[:, 0] == k, 1])
        trained = set(table[(table[:, 0] != TEST_FOLD) & (table[:, 0] != k), 1])
        missing_held = [c for c in classes if c not in held]
        missing_train = [c for c in classes if c not in trained]
        if missing_held:
            problems.append(f"fold {k} holds out no clip of {missing_held}")
        if missing_train:
            problems.append(f"fold {k} trains on no clip of {missing_train}")
    if problems:
        raise SplitError(
            "data.split.folds: a class is absent from a fold (" + "; ".join(problems) + "); use fewer folds, "
            "or data that has every class for every speaker group"
        )
