"""Test-time augmentation, shipped as one network: a member network scored on several views of each clip.

In evaluation the member sees the features as they are plus each configured view (a vocal-tract-length
warp of the frequency axis, a shift in time) and the output is log(mean of the softmaxes): averaged
probabilities, as logits, so calibration, serving, batch scoring and export take it as any other network.
In training it is the member alone: the views cost nothing to train, and the member is trained exactly
as it would be without them (same draws, same weights), so the cross-validation scores it both ways on
each fold (training.cross_validation) and the views' gain is read on the same model.

The warps are the ones training's augmentation draws from (data.augment.vtlp, data.augment.vtlp_sources),
fixed here: a speaker whose formants sit higher or lower than any heard in training is also scored as if
they sat 10% lower or higher. Inference costs 1 + len(warps) + len(shifts) member calls; the model size
is the member's. docs/results.md has what it did to the cross-validated accuracy on real speech.
"""

from __future__ import annotations

import torch
from torch import nn

from scopeml.models import NetworkConfig, build_network
from scopeml.models.ensemble import averaged


class TestTimeViews(nn.Module):
    """conf/model/dscnn_tta.yaml: `member` scored on the features and on each warp and shift of them, averaged."""

    __test__ = False  # not a pytest class, despite its name

    def __init__(
        self,
        n_classes: int,
        input_shape: tuple,
        sample_rate: int,
        *,
        member: NetworkConfig,
        warps: list[float] = (),
        shifts: list[int] = (),
        feature_bin_hz: torch.Tensor | None = None,
    ):
        from scopeml.data.augment import vtlp_sources

        super().__init__()
        warps, shifts = [float(a) for a in warps], [int(s) for s in shifts]
        if any(not 0.5 <= a <= 2.0 or a == 1.0 for a in warps):
            raise ValueError(f"warps are factors in [0.5, 2] other than 1 (the features as they are), got {warps}")
        frames = int(input_shape[-1])
        if any(s == 0 or abs(s) >= frames for s in shifts):
            raise ValueError(f"shifts are frame counts other than 0 and shorter than the clip's {frames}, got {shifts}")
        if warps and feature_bin_hz is None:
            raise ValueError(
                "warps need the front end's bin frequencies: use a front end with a bin_frequencies() method "
                "(scopeml.models.frontend.LogMel has one) or set warps to []"
            )
        self.member = build_network(member, "model.member", n_classes, input_shape, sample_rate, feature_bin_hz)
        self.channels_last_on_cpu = bool(getattr(self.member, "channels_last_on_cpu", False))
        bins = int(input_shape[-2])
        if warps:
            lo, hi, t = vtlp_sources(torch.as_tensor(feature_bin_hz, dtype=torch.float64), torch.tensor(warps))
            if lo.shape[1] != bins:
                raise ValueError(f"the front end reports {lo.shape[1]} bin frequencies; its features have {bins} bins")
        else:
            lo = hi = torch.zeros(0, bins, dtype=torch.long)
            t = torch.zeros(0, bins, dtype=torch.float64)
        # Derived from the config, not learned: kept out of the state dict, so a checkpoint holds only weights and
        # cannot carry warps that disagree with the config it is rebuilt from.
        self.register_buffer("warp_lo", lo, persistent=False)
        self.register_buffer("warp_hi", hi, persistent=False)
        self.register_buffer("warp_t", t.float()[:, None, :, None], persistent=False)
        self.register_buffer("shift_frames", torch.tensor(shifts, dtype=torch.long), persistent=False)

    def views(self, features: torch.Tensor) -> list[torch.Tensor]:
        """The features as they are, then each warp, then each shift: (batch, 1, bins, frames) each."""
        out = [features]
        for i in range(self.warp_lo.shape[0]):
            lo, hi = features.index_select(2, self.warp_lo[i]), features.index_select(2, self.warp_hi[i])
            out.append(lo * (1 - self.warp_t[i]) + hi * self.warp_t[i])
        for j in range(self.shift_frames.shape[0]):
            s = int(self.shift_frames[j])
            # the edge frame repeated into the gap: for a centred word, that is the silence around it
            if s > 0:
                out.append(torch.cat([features[..., :1].expand(-1, -1, -1, s), features[..., :-s]], dim=-1))
            else:
                out.append(torch.cat([features[..., -s:], features[..., -1:].expand(-1, -1, -1, -s)], dim=-1))
        return out

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.member(features)
        return averaged(torch.stack([self.member(v) for v in self.views(features)]))
