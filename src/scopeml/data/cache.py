"""On-disk cache of prepared clips, keyed by everything that changes their content."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

# Bump when the code that prepares clips changes what it produces.
CACHE_VERSION = 2


def cache_path(cache_dir: str | Path, recipe: str, key: str) -> Path:
    return Path(cache_dir) / f"{recipe}-{key[:16]}"


def load(path: Path) -> tuple[pd.DataFrame, np.ndarray, dict] | None:
    try:
        manifest = pd.read_parquet(path / "manifest.parquet")
        waves = np.load(path / "waves.npy", mmap_mode="r")
        info = json.loads((path / "source.json").read_text())
    except (OSError, ValueError):
        return None  # absent or half-written: rebuild
    if len(manifest) != len(waves):
        return None
    return manifest, np.asarray(waves), info


def store(path: Path, manifest: pd.DataFrame, waves: np.ndarray, info: dict) -> None:
    """Write into a temporary sibling and rename, so a killed run never leaves a half cache behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
    try:
        manifest.to_parquet(tmp / "manifest.parquet", index=False)
        np.save(tmp / "waves.npy", waves)
        (tmp / "source.json").write_text(json.dumps(info, indent=2, sort_keys=True))
        if path.exists():  # unreadable (load() failed): rebuilt here
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.replace(tmp, path)
        except OSError:
            # Another process stored the same key meanwhile (a parallel sweep's jobs building one cold cache
            # together): same key, same content, so theirs stays.
            if load(path) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
