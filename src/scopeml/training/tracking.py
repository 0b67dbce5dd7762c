"""Experiment tracking with W&B through Lightning's WandbLogger; offline needs no account or network."""

from __future__ import annotations

import os
from pathlib import Path

from scopeml.config.schema import TrackerConfig


def build_logger(cfg: TrackerConfig, run_dir: Path, name: str, group: str | None, config: dict):
    if cfg.kind == "none":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(
        project=cfg.project,
        entity=cfg.entity,
        name=name,
        group=cfg.group or group,
        tags=list(cfg.tags),
        notes=cfg.notes,
        save_dir=str(run_dir),
        mode=cfg.mode,
        config=config,
        job_type="train",
    )


def log_summary(logger, summary: dict) -> None:
    """Put final numbers in the run summary (what the W&B table of runs shows)."""
    if logger is None:
        return
    run = logger.experiment
    for key, value in summary.items():
        run.summary[key] = value


def finish(logger) -> None:
    if logger is None:
        return
    import wandb

    wandb.finish()
