"""Depthwise-separable CNN (DS-CNN) from "Hello Edge" (Zhang et al., 2017).

One regular conv (`first_kernel`, `first_stride`, `channels` filters) + BN + ReLU,
then `blocks` depthwise-separable blocks (3x3 depthwise conv + BN + ReLU,
1x1 pointwise conv + BN + ReLU), global average pool, dropout, linear head.

The defaults (64 channels, 4 blocks, 10x4 kernel with stride 2x2) are the
paper's DS-CNN-S. Differences from the paper: the input is the log-mel
front end's (batch, 1, n_mels, frames) instead of (time, MFCC) frames, so the
first kernel is given as (mel bands, frames); padding is symmetric k//2 (close to
TensorFlow's 'same'), so any input size works, down to a single frame; convs
before BN carry no bias.
"""

from __future__ import annotations

from torch import nn


def _conv_bn_relu(c_in: int, c_out: int, kernel, stride=1, groups: int = 1) -> list[nn.Module]:
    kernel = tuple(kernel) if isinstance(kernel, (list, tuple)) else (kernel, kernel)
    padding = tuple(k // 2 for k in kernel)
    return [
        nn.Conv2d(
            c_in,
            c_out,
            kernel,
            stride=tuple(stride) if isinstance(stride, list) else stride,
            padding=padding,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


class DsCnn(nn.Sequential):
    """conf/model/dscnn.yaml: `channels` filters, `blocks` depthwise-separable blocks."""

    channels_last_on_cpu = True  # faster on CPU in that layout, with scopeml.training.allocator's settings

    def __init__(
        self,
        n_classes: int,
        *,
        channels: int,
        blocks: int,
        first_kernel: list[int],
        first_stride: list[int],
        dropout: float,
    ):
        if channels < 1 or blocks < 1:
            raise ValueError(f"channels and blocks must be >= 1, got {channels} and {blocks}")
        for name, pair in (("first_kernel", first_kernel), ("first_stride", first_stride)):
            if len(pair) != 2 or min(pair) < 1:
                raise ValueError(f"{name} must be two positive integers (mel bands, frames), got {list(pair)}")
        c = channels
        layers: list[nn.Module] = _conv_bn_relu(1, c, list(first_kernel), list(first_stride))
        for _ in range(blocks):
            layers += _conv_bn_relu(c, c, 3, groups=c)  # depthwise
            layers += _conv_bn_relu(c, c, 1)  # pointwise
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, n_classes)]
        super().__init__(*layers)
