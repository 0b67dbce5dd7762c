"""Log-mel front end as a module, so training, serving and edge export compute features identically."""

from __future__ import annotations

import math

import torch
from torch import nn


class LogMel(nn.Module):
    """(batch, samples) waveforms -> (batch, 1, n_mels, frames) log-mel features, standardized per clip
    (normalize="clip": one mean and spread) or per mel band over time (normalize="band").

    Built from conf/frontend/logmel.yaml; scopeml passes `sample_rate` (data.preprocess.sample_rate).
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        n_mels: int,
        n_fft: int,
        win_length: int,
        hop_length: int,
        f_min: float,
        f_max: float | None,
        normalize: str = "clip",
    ):
        super().__init__()
        import torchaudio

        if win_length > n_fft:
            raise ValueError(f"win_length ({win_length}) must be <= n_fft ({n_fft})")
        if n_mels < 8:
            raise ValueError(f"n_mels must be at least 8, got {n_mels}")
        if normalize not in ("clip", "band"):
            raise ValueError(f"normalize must be 'clip' or 'band', got {normalize!r}")
        self.normalize = normalize
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            power=2.0,
        )

    @torch.jit.unused
    def bin_frequencies(self) -> torch.Tensor:
        """Each mel band's centre in Hz (the HTK mel scale torchaudio uses by default), lowest first."""
        mel = self.mel.mel_scale

        def to_mel(hz: float) -> float:
            return 2595.0 * math.log10(1.0 + hz / 700.0)

        points = torch.linspace(to_mel(mel.f_min), to_mel(mel.f_max), mel.n_mels + 2, dtype=torch.float64)[1:-1]
        return 700.0 * (10 ** (points / 2595.0) - 1.0)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        # Per-clip standardization makes the model indifferent to recording level,
        # which varies far more between microphones than between words.
        x = torch.log(self.mel(waves) + 1e-6)
        # "band" standardizes each mel band over time (cepstral mean and variance normalization): it also
        # removes a speaker's or microphone's fixed spectral tilt, which one level per clip leaves in.
        dims = [-1] if self.normalize == "band" else [-2, -1]  # a list: TorchScript types both branches alike
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True)
        return ((x - mean) / (std + 1e-5)).unsqueeze(1)
