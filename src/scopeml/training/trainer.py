"""Build the lightning.Trainer from the trainer and hparams groups."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch import callbacks as cb

from scopeml.config.schema import HParamsConfig, TrainerConfig


class EpochSeed(L.Callback):
    """Reseed the global RNG (dropout, anything else drawing from it) from (seed, epoch) at each epoch.

    Lightning does not checkpoint RNG states; this makes an epoch's random draws independent of
    whether the run was resumed, so a resumed run ends with the same weights as an uninterrupted one.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        import numpy as np

        torch.manual_seed(int(np.random.SeedSequence([self.seed, trainer.current_epoch]).generate_state(1)[0]))


def build_trainer(
    cfg: TrainerConfig,
    hp: HParamsConfig,
    run_dir: Path,
    logger,
    seed: int = 0,
    extra_callbacks: dict[str, dict] | None = None,
    keep: str = "best",
    callbacks: list | tuple = (),
) -> L.Trainer:
    """The Lightning trainer with scopeml's own callbacks (checkpoints, seeding, progress) and the config's extras.

    keep: "best" checkpoints the epoch with the best validation accuracy; "last" keeps the final epoch's
    weights (cross-validation's final model: it has no validation split to choose an epoch on); "none"
    writes no checkpoint (a fold model, scored in memory and dropped). `callbacks`: built callbacks to add (an Optuna
    trial's, scopeml.training.pruning).
    """
    from scopeml.components import build

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    callbacks = [EpochSeed(seed), *callbacks]
    if keep != "none":
        callbacks.append(
            cb.ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="best",
                monitor="val/acc" if keep == "best" else None,
                mode="max",
                save_last=True,
                enable_version_counter=False,
            )  # always best.ckpt: packaging and selection read that name
        )
    if cfg.progress_bar == "rich":
        callbacks.append(cb.RichProgressBar(leave=True))
    elif cfg.progress_bar == "tqdm":
        callbacks.append(cb.TQDMProgressBar())
    if cfg.early_stopping_patience:
        callbacks.append(cb.EarlyStopping(monitor="val/acc", mode="max", patience=cfg.early_stopping_patience))
    if logger is not None:
        callbacks.append(cb.LearningRateMonitor(logging_interval="epoch"))
    callbacks += [build(spec, f"callbacks.{name}") for name, spec in (extra_callbacks or {}).items()]
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
        log_every_n_steps=cfg.log_every_n_steps,
        enable_progress_bar=cfg.progress_bar != "none",
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        enable_checkpointing=keep != "none",
        default_root_dir=str(run_dir),
    )
