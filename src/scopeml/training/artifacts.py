"""What a run leaves in its folder, written so a crash never looks like a finished run.

`status.json` says running/complete/failed; `metrics.json` is written last and
atomically, so its presence means the run finished.
"""

from __future__ import annotations

import json
import os
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_jsonable)
        f.write("\n")
    os.replace(tmp, path)


def _jsonable(obj: Any):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def mark(run_dir: Path, status: str, **extra: Any) -> None:
    path = run_dir / "status.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state.update(status=status, updated_utc=now(), **extra)
    write_json(path, state)


def mark_failed(run_dir: Path, stage: str, exc: BaseException) -> None:
    mark(run_dir, "failed", stage=stage, error=f"{type(exc).__name__}: {exc}",
         traceback="".join(traceback.format_exception(exc))[-4000:])


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


def read_stage(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "status.json").read_text()).get("stage", "unknown")
    except (OSError, ValueError):
        return "unknown"


def start(cfg, prog: str):
    """The start of a stage app: mark the run folder running, check the config (every problem at once),
    and on a bad config mark it failed and exit 2. Returns (run_dir, config)."""
    import sys

    from hydra.core.hydra_config import HydraConfig

    from scopeml.config import ConfigError, load

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    mark(run_dir, "running", stage="config", started_utc=now())
    try:
        return run_dir, load(cfg)
    except ConfigError as exc:
        mark_failed(run_dir, "config", exc)
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(2)
