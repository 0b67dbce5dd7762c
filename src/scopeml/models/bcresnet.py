"""BC-ResNet: broadcasted residual learning (Kim et al., 2021, arXiv:2106.04140).

Layout for input (batch, 1, F, T) log-mel frames, `w = width`:

    stem      5x5 conv, stride (2, 1), 2w channels + BN + ReLU        F -> ceil(F/2)
    stage i   stages[i]    BC-ResBlocks with (2 + i) * w channels    (w=8: 16, 24, 32, 40)
              first block: transition (1x1 conv + BN + ReLU for the channel change,
                           frequency stride 2 in stages 1 and 2, no identity shortcut)
              temporal dilation 2**i (1, 2, 4, 8), capped at 8
    head      5x5 depthwise conv (no frequency padding: collapses the 5 remaining bands
              at n_mels=40), 1x1 conv to 8w channels + BN + ReLU, global average pool,
              linear to n_classes

BC-ResBlock, as in the paper and its reference code:

    f2 = SubSpectralNorm(freq-wise depthwise 3x1 conv(x))           # 2-D, per frequency band
    f1 = dropout(1x1 conv(SiLU(BN(temporal depthwise 1x3 conv(mean_F f2)))))   # 1-D, over time
    y  = ReLU(x + f2 + broadcast(f1))    (transition blocks: ReLU(f2 + broadcast(f1)))

SubSpectralNorm splits the frequency axis into `sub_bands` groups and keeps separate
BN statistics and affine parameters per (channel, group); where a block's frequency size
is not divisible by `sub_bands` it falls back to plain BatchNorm2d. Frequency sizes are
known when the model is built (from `input_shape`, which scopeml passes in), so the choice is static.

Deviations from the paper, all deliberate:
- Widths: the paper's BC-ResNet-tau uses stem 16*tau and stages [8, 12, 16, 20]*tau, head 32*tau.
  Here stages are [2, 3, 4, 5]*width with a 2*width stem (the stem is as wide as stage 1, where
  the paper's is twice as wide) and an 8*width head; width=8 gives stages 16/24/32/40 (the paper's
  BC-ResNet-2 stages), about 26k parameters.
- Since the stem may have stage 1's width, every stage's first block is a transition block
  (1x1 conv, no identity shortcut) even without a channel change; the paper only uses one
  where the channel count changes.
- Stage count other than 4: stage i still gets (2 + i) * width channels, frequency stride 2 in
  stages 1 and 2 only (where they exist), dilation 2**min(i, 3).
- Head: the depthwise conv's frequency kernel is min(5, remaining bands) with no frequency
  padding, so it matches the paper for 33..40 mel bands and still works for fewer; any
  remaining frequency extent is averaged by the global pool. The classifier is nn.Linear
  (equivalent to the paper's 1x1 conv after pooling).
- Dropout rate is `dropout` (the paper uses 0.1, the default here too); it is applied to
  the temporal branch as channel dropout (Dropout2d), as in the reference code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SubSpectralNorm(nn.Module):
    """BatchNorm with separate statistics per (channel, frequency sub-band)."""

    def __init__(self, channels: int, sub_bands: int):
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        x = self.bn(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t))
        return x.reshape(b, c, f, t)


def _norm(channels: int, freq: int, sub_bands: int) -> nn.Module:
    if sub_bands > 1 and freq % sub_bands == 0:
        return SubSpectralNorm(channels, sub_bands)
    return nn.BatchNorm2d(channels)


class BcResBlock(nn.Module):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        freq_in: int,
        freq_stride: int,
        dilation: int,
        sub_bands: int,
        dropout: float,
        transition: bool,
    ):
        super().__init__()
        self.transition = transition
        pre: list[nn.Module] = []
        if transition:
            pre = [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        elif c_in != c_out:
            raise ValueError("a normal BC-ResBlock keeps its channel count")
        freq_out = (freq_in - 1) // freq_stride + 1
        self.f2 = nn.Sequential(
            *pre,
            nn.Conv2d(c_out, c_out, (3, 1), stride=(freq_stride, 1), padding=(1, 0), groups=c_out, bias=False),
            _norm(c_out, freq_out, sub_bands),
        )
        self.f1 = nn.Sequential(
            nn.Conv2d(c_out, c_out, (1, 3), padding=(0, dilation), dilation=(1, dilation), groups=c_out, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 1, bias=False),
            nn.Dropout2d(dropout),
        )
        self.freq_out = freq_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.f2(x)
        out = y + self.f1(y.mean(dim=2, keepdim=True))  # broadcast over frequency
        if not self.transition:
            out = out + x
        return F.relu(out)


class BcResNet(nn.Module):
    """conf/model/bcresnet.yaml. scopeml passes `input_shape` (1, n_mels, frames): the frequency sizes fix the norms."""

    def __init__(
        self,
        n_classes: int,
        input_shape: tuple[int, int, int],
        *,
        width: int,
        stages: list[int],
        sub_bands: int,
        dropout: float,
    ):
        super().__init__()
        if width < 1 or sub_bands < 1:
            raise ValueError(f"width and sub_bands must be >= 1, got {width} and {sub_bands}")
        if not stages or min(stages) < 1:
            raise ValueError(f"stages needs at least one stage of >= 1 block, got {list(stages)}")
        w = width
        stem_c = 2 * w
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem_c, 5, stride=(2, 1), padding=2, bias=False), nn.BatchNorm2d(stem_c), nn.ReLU()
        )
        freq = (input_shape[1] - 1) // 2 + 1
        blocks: list[nn.Module] = []
        c_in = stem_c
        for i, n_blocks in enumerate(stages):
            c_out = (2 + i) * w
            dilation = 2 ** min(i, 3)
            for j in range(n_blocks):
                stride = 2 if (j == 0 and i in (1, 2)) else 1
                block = BcResBlock(c_in, c_out, freq, stride, dilation, sub_bands, dropout, transition=j == 0)
                blocks.append(block)
                freq = block.freq_out
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        head_c = 8 * w
        self.head = nn.Sequential(
            nn.Conv2d(c_in, c_in, (min(5, freq), 5), padding=(0, 2), groups=c_in, bias=False),
            nn.Conv2d(c_in, head_c, 1, bias=False),
            nn.BatchNorm2d(head_c),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(head_c, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
