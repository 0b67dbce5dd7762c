"""A sweep job's link to its Optuna trial (scopeml.hpo): per-epoch validation scores, pruning, the run folder's record.

scopeml's Optuna sweeper sets SCOPEML_OPTUNA_TRIAL for each job it launches (through hydra.job.env_set, so on any
launcher and only for that job). With it, the training stage scores the validation split at every epoch on the
scoping's primary metric (the definitions of scopeml.metrics, as in metrics.json), logs it as `val/<metric>`, and
optuna-integration's PyTorchLightningPruningCallback reports it to the trial and stops the fit when the study's
pruner says the trial is unpromising. The job then marks status.json `pruned` and raises optuna.TrialPruned, which the
sweeper tells the study.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from scopeml import run_files
from scopeml.metrics import category_indices, classification_metrics

# scopeml.hpo.TRIAL_ENV, spelled out: importing scopeml.hpo would import optuna into every training run
TRIAL_ENV = "SCOPEML_OPTUNA_TRIAL"


class ValidationScores(L.Callback):
    """Log `val/<metric>` (a scopeml.metrics quality metric) at the end of every validation epoch."""

    def __init__(self, metric: str, classes: list[str]):
        self.metric = metric
        self.n_classes = len(classes)
        self.categories = category_indices(classes)
        self._pred: list[torch.Tensor] = []
        self._true: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._pred, self._true = [], []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        logits = outputs if isinstance(outputs, torch.Tensor) else None
        if logits is None:  # a module whose validation_step returns no logits
            with torch.no_grad():
                logits = pl_module(batch[0])
        self._pred.append(logits.argmax(dim=-1).detach().cpu())
        self._true.append(batch[1].detach().cpu())

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self._pred:
            return
        pred, true = torch.cat(self._pred), torch.cat(self._true)
        if trainer.world_size > 1:  # every rank scored a shard: score the whole split
            pred, true = (pl_module.all_gather(t).reshape(-1).cpu() for t in (pred, true))
        value = classification_metrics(true.numpy(), pred.numpy(), self.n_classes, self.categories).get(self.metric)
        if value is not None and math.isfinite(value):
            pl_module.log(f"val/{self.metric}", float(value), on_step=False, on_epoch=True, sync_dist=False)


def distributed(trainer) -> bool:
    """Whether the trainer config runs several processes (DDP), from the trainer group's settings."""
    devices = trainer.devices
    if isinstance(devices, str) and devices.strip() == "auto":
        # Lightning's "auto": one process on CPU, one per visible GPU otherwise
        several = trainer.accelerator != "cpu" and _visible_gpus() > 1
    else:
        several = (isinstance(devices, int) and (devices > 1 or devices == -1)) or (
            isinstance(devices, str) and devices.strip() != "1"
        )
    return "ddp" in str(trainer.strategy).lower() or trainer.num_nodes > 1 or several


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass
class TrialLink:
    """The trial a sweep job is (from SCOPEML_OPTUNA_TRIAL)."""

    study: str
    storage: str
    number: int
    pruner: Any = None
    _trial: Any = None

    @classmethod
    def from_environment(cls) -> TrialLink | None:
        raw = os.environ.get(TRIAL_ENV)
        if not raw:
            return None
        info = json.loads(raw)
        return cls(info["study"], info["storage"], int(info["trial"]), info.get("pruner"))

    def trial(self):
        """The trial itself, from its study in the shared storage (with the study's pruner, as the sweeper built it)."""
        import optuna

        from scopeml import hpo

        if self._trial is None:
            study = optuna.load_study(
                study_name=self.study, storage=hpo.open_storage(self.storage), pruner=hpo.build_pruner(self.pruner)
            )
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
            self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial

    def record(self, run_dir: Path) -> None:
        """The run folder names its trial (status.json `optuna`)."""
        from scopeml.redact import without_url_password

        info = {"study": self.study, "storage": without_url_password(self.storage), "trial": self.number}
        run_files.update_status(run_dir, run_files.read_status(run_dir).status, optuna=info)

    def callbacks(self, metric: str, classes: list[str]) -> list:
        """What a fit needs to be pruned: the per-epoch score, and optuna-integration's pruning callback on it."""
        from optuna_integration import PyTorchLightningPruningCallback

        return [
            ValidationScores(metric, classes),
            PyTorchLightningPruningCallback(self.trial(), monitor=f"val/{metric}"),
        ]

    @staticmethod
    def is_pruned(exc: BaseException) -> bool:
        import optuna

        return isinstance(exc, optuna.TrialPruned)

    def mark_pruned(self, run_dir: Path, exc: BaseException, metric: str) -> None:
        """status.json says `pruned`, at which epoch and on what value: the run stopped on purpose, it did not fail."""
        trial = self.trial()
        values = trial.study._storage.get_trial(trial._trial_id).intermediate_values
        epoch = max(values) if values else None
        run_files.update_status(
            run_dir,
            "pruned",
            stage="fit",
            finished_utc=run_files.now(),
            pruned={
                "trial": self.number,
                "epoch": epoch,
                "metric": f"val/{metric}",
                "value": values.get(epoch) if values else None,
                "reported": {str(k): v for k, v in sorted(values.items())},
                "reason": f"{exc} The study's pruner judged its score worse than the completed trials' at that epoch.",
            },
        )
