"""An ensemble of independently trained networks, shipped as one network.

`members` copies of any network config (`member`, a `_target_` component like conf/model/dscnn.yaml),
each with its own random initialization. In training each member is fitted on its own loss: the
forward returns the members' logits stacked, (members, batch, classes), and KeywordSpotter sums the
members' losses, so each member gets exactly the gradient it would get alone (their weights are
disjoint). They share the batches and the augmentation draws; the diversity is the initialization and
the dropout masks, which is where most of a deep ensemble's gain comes from. In evaluation it returns
log(mean of the members' softmax): averaged probabilities, as logits, so calibration, serving, batch
scoring and export take it as any other network. A global hparams.gradient_clip_val clips the members'
gradients together (one norm over all of them).

Costs scale with `members`: training time, model size and inference time. conf/model/dscnn_ensemble.yaml
is two DS-CNNs; docs/results.md has what it did to the cross-validated accuracy on real speech.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from scopeml.models import NetworkConfig, build_network


class Ensemble(nn.Module):
    """conf/model/dscnn_ensemble.yaml: `members` networks built from `member`, probabilities averaged."""

    def __init__(
        self,
        n_classes: int,
        input_shape: tuple,
        sample_rate: int,
        *,
        member: NetworkConfig,
        members: int,
        feature_bin_hz: torch.Tensor | None = None,
    ):
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        runtime = (n_classes, input_shape, sample_rate, feature_bin_hz)  # every value the ensemble got
        self.members = nn.ModuleList(build_network(member, "model.member", *runtime) for _ in range(members))
        # A member that trains faster channels-last on CPU (DS-CNN) makes the ensemble ask for the same.
        self.channels_last_on_cpu = all(getattr(m, "channels_last_on_cpu", False) for m in self.members)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([m(features) for m in self.members])
        if self.training:
            return logits  # KeywordSpotter fits each member on its own loss
        return averaged(logits)


def averaged(member_logits: torch.Tensor) -> torch.Tensor:
    """(members, batch, classes) logits -> log of the members' mean softmax: the ensemble's output as logits."""
    return torch.logsumexp(torch.log_softmax(member_logits, dim=-1), dim=0) - math.log(len(member_logits))
