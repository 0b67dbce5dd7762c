"""The modules an export wraps around the bundle's model: calibration inside, and an ONNX-exportable spectrogram."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Calibrated(nn.Module):
    """features -> network -> softmax(logits / T): the artifact answers with calibrated probabilities."""

    def __init__(self, features: nn.Module, net: nn.Module, temperature: float):
        super().__init__()
        self.features, self.net, self.temperature = features, net, float(temperature)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(self.features(waves)) / self.temperature, dim=-1)


class DftMelSpectrogram(nn.Module):
    """torchaudio's MelSpectrogram (power 2, centred, reflect-padded) as conv1d + matmul, for ONNX.

    Same window, hop and filterbank as the trained front end; features agree to ~3e-6. The DFT
    basis (bins x n_fft, ~0.9 MB as float32) is rebuilt in the graph from N-entry cos/sin tables
    and integer indices held as initializers, so the file stays small; export with
    do_constant_folding=False keeps it unfolded, and onnxruntime folds it once at session load.
    """

    def __init__(self, mel: nn.Module):
        super().__init__()
        spec = mel.spectrogram
        expected = dict(power=2.0, normalized=False, center=True, pad_mode="reflect", onesided=True, pad=0)
        found = {k: getattr(spec, k, None) for k in expected}
        if found != expected:
            raise ValueError(f"the DFT front end only reproduces MelSpectrogram{expected}, not {found}")
        n_fft, window = spec.n_fft, spec.window.double()
        full = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - window.numel()) // 2  # torch.stft centres a short window inside n_fft
        full[left : left + window.numel()] = window
        angle = 2 * torch.pi * torch.arange(n_fft, dtype=torch.float64) / n_fft
        self.register_buffer("cos", torch.cos(angle).float())  # float64 tables: exact to float32 rounding
        self.register_buffer("sin", (-torch.sin(angle)).float())
        self.register_buffer("window", full.float())
        self.register_buffer("k", torch.arange(n_fft // 2 + 1))
        self.register_buffer("n", torch.arange(n_fft))
        self.register_buffer("fb", mel.mel_scale.fb.detach().clone())
        self.n_fft, self.hop, self.bins = n_fft, spec.hop_length, n_fft // 2 + 1

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        phase = (self.k[:, None] * self.n[None]) % self.n_fft  # integer k*n mod N: no float angle error
        basis = (torch.cat([self.cos[phase], self.sin[phase]]) * self.window).unsqueeze(1)  # real rows, then imaginary
        x = F.pad(waves.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        y = F.conv1d(x, basis, stride=self.hop)
        power = y[:, : self.bins] ** 2 + y[:, self.bins :] ** 2
        return torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)
