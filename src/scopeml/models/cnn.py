"""A small VGG-style CNN: conv-BN-ReLU-pool blocks, global average pool, linear head."""

from __future__ import annotations

from torch import nn


class SmallCnn(nn.Sequential):
    """conf/model/cnn.yaml. Input (batch, 1, n_mels, frames); any size down to 2**len(channels) per axis."""

    channels_last_on_cpu = True  # trains faster in that layout on CPU (scopeml.training.module)

    def __init__(self, n_classes: int, *, channels: list[int], dropout: float):
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels needs at least one positive channel count, got {list(channels)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, n_classes)]
        super().__init__(*layers)
