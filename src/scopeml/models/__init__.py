"""Model zoo: each architecture is a module with build(cfg, n_classes); the log-mel front end is shared."""

from __future__ import annotations

import io

import torch
from torch import nn

from scopeml.config.schema import ModelConfig


def build_classifier(cfg: ModelConfig, n_classes: int, sample_rate: int) -> nn.Module:
    """Waveform in, logits out: features and network in one module, as deployed."""
    from scopeml.models import bcresnet, cnn, dscnn
    from scopeml.models.features import LogMel

    builders = {"cnn": cnn.build, "dscnn": dscnn.build, "bcresnet": bcresnet.build}
    return nn.Sequential(LogMel(cfg.features, sample_rate), builders[cfg.arch](cfg, n_classes))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def size_mb(model: nn.Module) -> float:
    """Serialized state_dict size: what a deployment actually ships."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6
