"""A user's components for tests, some of them deliberately wrong."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback
from torch import nn


class WrongWidth(nn.Module):
    """Ignores n_classes: always five logits."""

    def __init__(self, n_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        self.head = nn.Linear(input_shape[1], 5)

    def forward(self, x):
        return self.head(x.mean(dim=(1, 3)))


class Fine(nn.Module):
    def __init__(self, n_classes: int, input_shape: tuple[int, int, int], *, hidden: int = 4):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(input_shape[1], hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x):
        return self.head(x.mean(dim=(1, 3)))


class FramePower(nn.Module):
    """A user's front end that does not say where its bins lie (no bin_frequencies())."""

    def __init__(self, sample_rate: int):
        super().__init__()

    def forward(self, waves):
        return waves.unfold(-1, 160, 160).pow(2).log1p().unsqueeze(1).transpose(-1, -2)  # (batch, 1, 160, frames)


class Notify(Callback):
    """A user's callback holding credentials, as a chat or paging hook would (it sends nothing here)."""

    def __init__(self, webhook_token: str, channel: str, password: str = ""):
        self.webhook_token, self.channel, self.password = webhook_token, channel, password


class FitLog(Callback):
    """Appends the folder of every fit it trains to `path`: which trainings a config's callback reached."""

    def __init__(self, path: str):
        self.path = path

    def on_fit_start(self, trainer, pl_module):
        with open(self.path, "a") as out:
            out.write(Path(trainer.default_root_dir).name + "\n")
