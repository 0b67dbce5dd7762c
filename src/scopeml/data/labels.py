"""Raw labels to scoping classes: one function every recipe goes through."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scopeml.config.schema import LabelsConfig
from scopeml.data.dataset import DataError


def normalize_labels(
    raw: pd.Series, sources: pd.Series, cfg: LabelsConfig, classes: list[str]
) -> tuple[pd.Series, np.ndarray]:
    """Return (labels, keep-mask). Case and spacing first, then aliases, fillers, then the `others` policy."""
    text = raw.astype(str).str.strip()
    aliases = dict(cfg.map)
    if cfg.lowercase:
        text = text.str.lower()
        aliases = {k.lower(): v for k, v in aliases.items()}
    fillers = {f.lower() if cfg.lowercase else f for f in cfg.fillers}
    labels = text.map(lambda t: aliases.get(t, t))
    if fillers and cfg.unknown:
        labels = labels.where(~text.isin(fillers), cfg.unknown)
    outside = ~labels.isin(classes)
    keep = np.ones(len(labels), dtype=bool)
    if outside.any():
        if cfg.others == "drop":
            keep = ~outside.to_numpy()
        elif cfg.others == "unknown":
            labels = labels.where(~outside, cfg.unknown)
        else:
            examples = "; ".join(
                f"{src} has label {r!r}" for src, r in zip(sources[outside].head(5), raw[outside].head(5))
            )
            raise DataError(
                f"{int(outside.sum())} clip(s) have labels outside scoping.classes {classes} "
                f"(map them with data.labels.map, or set data.labels.others to drop or unknown): {examples}"
            )
    return labels, keep
