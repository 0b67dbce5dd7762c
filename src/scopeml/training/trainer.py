"""Build the lightning.Trainer from the trainer and hparams groups."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch import callbacks as cb

from scopeml.config.schema import HParamsConfig, TrainerConfig


def build_trainer(cfg: TrainerConfig, hp: HParamsConfig, run_dir: Path, logger) -> L.Trainer:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    callbacks: list = [
        cb.ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/acc", mode="max", save_last=True),
    ]
    if cfg.progress_bar == "rich":
        callbacks.append(cb.RichProgressBar(leave=True))
    elif cfg.progress_bar == "tqdm":
        callbacks.append(cb.TQDMProgressBar())
    if cfg.early_stopping_patience:
        callbacks.append(cb.EarlyStopping(monitor="val/acc", mode="max", patience=cfg.early_stopping_patience))
    if logger is not None:
        callbacks.append(cb.LearningRateMonitor(logging_interval="epoch"))
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=cfg.precision,
        deterministic=cfg.deterministic,
        max_epochs=hp.max_epochs,
        gradient_clip_val=hp.gradient_clip_val,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        limit_test_batches=cfg.limit_test_batches,
        log_every_n_steps=cfg.log_every_n_steps,
        enable_progress_bar=cfg.progress_bar != "none",
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
    )
