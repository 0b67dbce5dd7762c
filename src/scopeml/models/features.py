"""Log-mel features as a module, so training, serving and edge export compute them identically."""

from __future__ import annotations

import torch
from torch import nn

from scopeml.config.schema import FeaturesConfig


class LogMel(nn.Module):
    def __init__(self, cfg: FeaturesConfig, sample_rate: int):
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=cfg.n_fft,
            win_length=cfg.win_length,
            hop_length=cfg.hop_length,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            n_mels=cfg.n_mels,
            power=2.0,
        )

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, 1, n_mels, frames), standardized per clip.

        Per-clip standardization makes the model indifferent to recording level,
        which varies far more between microphones than between words.
        """
        x = torch.log(self.mel(waves) + 1e-6)
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-2, -1), keepdim=True)
        return ((x - mean) / (std + 1e-5)).unsqueeze(1)
