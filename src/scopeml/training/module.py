"""The LightningModule: loss, optimizer and schedule (all `_target_` components) around a waveform classifier."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from scopeml.components import build
from scopeml.config import _validate
from scopeml.config.schema import AugmentConfig, HParamsConfig
from scopeml.data.augment import _generator as augment_generator
from scopeml.data.augment import build as augment_parts
from scopeml.models import build_classifier, ensemble


def _bin_frequencies(net: nn.Module, aug_cfg: AugmentConfig) -> torch.Tensor | None:
    """The front end's bin centres in Hz, asked for only when the vocal-tract-length warp needs them."""
    if not aug_cfg.warps:
        return None
    front = net[0]
    if not callable(getattr(front, "bin_frequencies", None)):
        raise _validate.ConfigError(
            [
                f"data.augment.vtlp: the front end {type(front).__name__} has no bin_frequencies() method, so the "
                "warp cannot know where its bins lie; add one (as scopeml.models.frontend.LogMel has) "
                "or set vtlp to [1, 1]"
            ]
        )
    return front.bin_frequencies()


def _channels_last(module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


class KeywordSpotter(L.LightningModule):
    """Built from plain dicts so a checkpoint restores without unpickling config objects."""

    def __init__(
        self,
        model: dict,
        frontend: dict,
        hparams: dict,
        classes: list[str],
        sample_rate: int,
        clip_seconds: float = 1.0,
        augment: dict | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.opt_cfg: HParamsConfig = _validate.parse(HParamsConfig, hparams, "hparams")
        self.classes = list(classes)
        # `net` is what ships: front end and network. Augmentation lives beside it, training only.
        self.net: nn.Module = build_classifier(frontend, model, len(classes), sample_rate, clip_seconds)
        self.loss = build(self.opt_cfg.loss, "hparams.loss")
        aug_cfg = _validate.parse(AugmentConfig, augment or {}, "data.augment")
        bin_hz = _bin_frequencies(self.net, aug_cfg)
        self.wave_augment, self.spec_augment = augment_parts(aug_cfg, sample_rate, seed, bin_hz)
        self.augment_seed = seed
        self.augment_records: list[dict] = []
        self._channels_last_hook = None  # set by setup() for a network that asks for channels-last on CPU

    def setup(self, stage: str) -> None:
        """A network whose class sets `channels_last_on_cpu = True` trains in that memory layout on CPU.

        Measured on 2 cores, one thread: the CNN's quick-lifecycle run (8 epochs, 16 voices) took 44 CPU-s instead
        of 57; the DS-CNN's 92 instead of 107 once training kept freed memory (scopeml.training.allocator; before, the
        time its faster steps saved went into page faults). BC-ResNet does not ask (its sub-band norms got slower).
        The weights saved are the same numbers either way: the layout is not part of the model.
        """
        network = self.net[1]
        on_cpu = self.trainer.strategy.root_device.type == "cpu"
        if getattr(network, "channels_last_on_cpu", False) and on_cpu and self._channels_last_hook is None:
            network.to(memory_format=torch.channels_last)
            self._channels_last_hook = network.register_forward_pre_hook(_channels_last)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.net(waves)

    def _augmented_logits(self, waves: torch.Tensor, index: torch.Tensor, batch_idx: int) -> torch.Tensor:
        key = (self.current_epoch, batch_idx)
        if self.wave_augment is not None:
            waves, records = self.wave_augment(waves, key)
            self.augment_records.extend(
                {"epoch": key[0], "index": int(i), **r} for i, r in zip(index.tolist(), records)
            )
        if self.spec_augment is None:
            return self(waves)
        features, classifier = self.net[0], self.net[1]
        return classifier(self.spec_augment(features(waves), generator=augment_generator(self.augment_seed, (*key, 1))))

    def _step(self, batch, stage: str, batch_idx: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        waves, labels, index = batch
        logits = self._augmented_logits(waves, index, batch_idx) if stage == "train" else self(waves)
        if logits.dim() == 3:  # an ensemble in training (models.ensemble): (members, batch, classes)
            # Summed, each member gets the gradient it would get alone; logged per member, as one model's loss.
            loss = torch.stack([self.loss(member, labels) for member in logits]).sum()
            logged_loss, logits = loss.detach() / len(logits), ensemble.averaged(logits.detach())
        else:
            loss = logged_loss = self.loss(logits, labels)
        if stage == "train" and not torch.isfinite(loss):
            # Fail the trial loudly: a sweep records it as failed and moves on, instead of training on NaN.
            raise FloatingPointError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}; "
                f"the run diverged (try a lower hparams.lr, now {self.opt_cfg.lr})"
            )
        acc = (logits.argmax(dim=-1) == labels).float().mean()
        self.log(f"{stage}/loss", logged_loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(labels))
        self.log(f"{stage}/acc", acc, prog_bar=stage != "train", on_step=False, on_epoch=True, batch_size=len(labels))
        return loss, logits

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train", batch_idx)[0]

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")[1].detach()  # the logits: callbacks score the epoch (training.pruning)

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        h = self.opt_cfg
        optimizer = build(h.optimizer, "hparams.optimizer", params=self.parameters())
        if h.scheduler is None:
            return optimizer
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        # A schedule counts in the unit it is stepped in: T_max is epochs when stepped per epoch.
        scheduler = build(
            h.scheduler,
            "hparams.scheduler",
            optimizer=optimizer,
            total_steps=steps,
            T_max=epochs if h.scheduler_interval == "epoch" else steps,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": h.scheduler_interval}}
