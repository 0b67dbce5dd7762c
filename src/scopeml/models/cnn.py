"""A small VGG-style CNN: conv-BN-ReLU-pool blocks, global average pool, linear head."""

from __future__ import annotations

from torch import nn

from scopeml.config.schema import CnnModel


def build(cfg: CnnModel, n_classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    c_in = 1
    for c_out in cfg.channels:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(c_in, n_classes)]
    return nn.Sequential(*layers)
