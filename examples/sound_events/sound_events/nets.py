"""A user's own network: scopeml builds it from conf/model/tiny.yaml and passes the runtime values in."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """Log-mel frames (batch, 1, n_mels, frames) -> logits (batch, n_classes).

    `n_classes` and `input_shape` come from scopeml at build time (scoping.classes, the front end's
    output for one clip); `hidden` and `dropout` come from the YAML file.
    """

    def __init__(self, n_classes: int, input_shape: tuple[int, int, int], *, hidden: int, dropout: float = 0.1):
        super().__init__()
        channels, n_mels, _ = input_shape
        self.conv = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * n_mels, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean(dim=-1)  # average over time: one vector per mel band and channel
        return self.head(x.flatten(1))
