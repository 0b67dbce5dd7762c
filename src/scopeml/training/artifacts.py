"""What a run leaves in its folder, written so a crash never looks like a finished run.

`status.json` says running/complete/failed; `metrics.json` is written last and
atomically, so its presence means the run finished. scopeml.run_files defines, writes
and reads both; `mark` and the names imported from there stay here for the stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from scopeml.run_files import mark_failed, now, read_stage, update_status, write_json  # noqa: F401  (re-exported for the stages)

if TYPE_CHECKING:
    import numpy as np


def mark(run_dir: Path, status: str, **extra: Any) -> None:
    """Set status.json's status and fields (stage, timestamps, ...), keeping the others."""
    update_status(run_dir, status, **extra)


def save_config(run_dir: Path, resolved: dict) -> None:
    import yaml

    (run_dir / "config.yaml").write_text(
        "# Resolved config of this run: `scopeml-train --config-dir <this folder> --config-name config` re-runs it.\n"
        + yaml.safe_dump(resolved, sort_keys=False)
    )


def save_predictions(path: Path, manifest, probs: np.ndarray, classes: list[str]) -> None:
    """Per-clip rows: identity and metadata, label, prediction, confidence and every class probability."""
    table = manifest.reset_index(drop=True).copy()
    pred = probs.argmax(axis=1)
    table["pred"] = [classes[i] for i in pred]
    table["confidence"] = probs.max(axis=1)
    table["correct"] = table["pred"] == table["label"]
    for i, name in enumerate(classes):
        table[f"prob_{name}"] = probs[:, i]
    table.to_parquet(path, index=False)
