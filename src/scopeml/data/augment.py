"""Training-time augmentation: waveform (shift, gain, room, tilt, noise, speed), vocal-tract-length warps and
SpecAugment masks of the features.

Every random draw comes from a CPU generator seeded by (seed, *key), never from the global RNG,
so a rerun, a resumed run or a run on another device augments each batch identically, and the
per-clip records can be logged for error analysis.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from scopeml.config.schema import AugmentConfig

_SPEED_GRID = 100  # speed factors are snapped to k/100 so resampling stays a short polyphase filter
# Jaitly & Hinton's VTLP boundary (4.8 kHz of 8 kHz): below it frequencies scale by the warp factor, above it a
# second line brings the top bin back onto itself, so no band leaves the features and none is left empty.
_VTLP_KINK = 0.6
_DECAY_60_DB = 3 * math.log(10)  # amplitude decays by exp(-this * t / RT60): 60 dB of energy in RT60 seconds


def _generator(seed: int, key: tuple[int, ...]) -> torch.Generator:
    # SeedSequence mixes the whole tuple well: (epoch 1, batch 2) and (epoch 2, batch 1) get unrelated streams.
    entropy = [int(v) & (2**64 - 1) for v in (seed, *key)]  # SeedSequence rejects negatives
    state = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1
    return torch.Generator(device="cpu").manual_seed(state)


def _fit_length(x: torch.Tensor, n: int) -> torch.Tensor:
    """Center-crop or center-zero-pad the last dim to n, so speed changes keep the clip's middle in place."""
    length = x.shape[-1]
    if length >= n:
        start = (length - n) // 2
        return x[..., start : start + n]
    left = (n - length) // 2
    return nn.functional.pad(x, (left, n - length - left))


def room_responses(
    rt60_s: torch.Tensor, drr_db: torch.Tensor, sample_rate: int, length: int, g: torch.Generator
) -> torch.Tensor:
    """(len(rt60_s), length) simulated room impulse responses: a unit direct path at sample 0, then Gaussian noise
    whose amplitude decays by 60 dB in rt60_s, scaled so the direct-to-reverberant energy ratio is exactly drr_db.

    The late reverberation of a room is close to exponentially decaying noise (Polack's model); early reflections
    are not modelled, which keeps it to one randn and no room geometry.
    """
    t = torch.arange(1, length, dtype=torch.float64) / sample_rate
    tail = torch.randn(len(rt60_s), length - 1, generator=g, dtype=torch.float64)
    tail = tail * torch.exp(-_DECAY_60_DB * t[None, :] / rt60_s[:, None])
    energy = tail.pow(2).sum(1, keepdim=True).clamp_min(1e-30)
    tail = tail * torch.sqrt(10 ** (-drr_db[:, None] / 10) / energy)
    return torch.cat([torch.ones(len(rt60_s), 1, dtype=torch.float64), tail], dim=1)


def _reverberate(x: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """Each row of x convolved with its response, cut to x's length (the tail past the clip's end is dropped) and
    brought back to the row's own RMS, so the recorded gain stays the clip's level."""
    n = x.shape[-1]
    size = 1 << (n + responses.shape[-1] - 2).bit_length()
    dry = x.double()
    wet = torch.fft.irfft(torch.fft.rfft(dry, size) * torch.fft.rfft(responses.to(x.device), size), size)[:, :n]
    dry_rms = dry.pow(2).mean(-1, keepdim=True).sqrt()
    wet_rms = wet.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
    return (wet * dry_rms / wet_rms).to(x.dtype)


class WaveAugment:
    """Per-clip shift/gain/room/tilt/noise with probability cfg.prob, plus one speed factor per batch.

    Order: speed, then shift, then gain, then room, then tilt, then noise, so the recorded shift and SNR are exactly
    what the output contains, and the room keeps the clip's RMS, so the gain too (speed applied last would rescale
    the shift; noise applied first would change the SNR).
    Positive shift delays the clip. Noise is white Gaussian, scaled by its measured (not expected) RMS,
    so the recorded SNR (relative to the shifted, gained clip's own RMS) is exact rather than approximate;
    white rather than pink keeps it to one randn and no FFT. Samples are not clipped after gain: the
    features are log-mel standardised per clip, so values above 1.0 do no harm.
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int, seed: int):
        self.cfg, self.sample_rate, self.seed = cfg, sample_rate, seed

    def __call__(self, waves: torch.Tensor, key: tuple[int, ...]) -> tuple[torch.Tensor, list[dict]]:
        cfg, sr = self.cfg, self.sample_rate
        batch, n = waves.shape
        g = _generator(self.seed, key)
        # Draw everything up front in a fixed order, so the stream never depends on earlier outcomes.
        u = torch.rand(5, batch, generator=g, dtype=torch.float64)
        speed_u = float(torch.rand(1, generator=g, dtype=torch.float64))
        augmented = u[0] < cfg.prob
        shift = torch.round((2 * u[1] - 1) * cfg.time_shift_ms * sr / 1000).long() * augmented
        gain_db = (cfg.gain_db[0] + u[2] * (cfg.gain_db[1] - cfg.gain_db[0])) * augmented
        noisy = augmented & (u[3] < cfg.noise_prob)
        snr_db = cfg.noise_snr_db[0] + u[4] * (cfg.noise_snr_db[1] - cfg.noise_snr_db[0])
        # Drawn only when on, so configs without tilt keep the random stream they had before it existed.
        tilt = torch.zeros(batch, dtype=torch.float64)
        if list(cfg.tilt) != [0.0, 0.0]:
            tilt = cfg.tilt[0] + torch.rand(batch, generator=g, dtype=torch.float64) * (cfg.tilt[1] - cfg.tilt[0])
            tilt = tilt * augmented
        reverberant = torch.zeros(batch, dtype=torch.bool)
        rt60 = drr = torch.zeros(batch, dtype=torch.float64)
        if cfg.reverb_prob > 0:
            r = torch.rand(3, batch, generator=g, dtype=torch.float64)
            reverberant = augmented & (r[0] < cfg.reverb_prob)
            rt60 = cfg.reverb_rt60_s[0] + r[1] * (cfg.reverb_rt60_s[1] - cfg.reverb_rt60_s[0])
            drr = cfg.reverb_drr_db[0] + r[2] * (cfg.reverb_drr_db[1] - cfg.reverb_drr_db[0])
        speed = 1.0
        if list(cfg.speed) != [1.0, 1.0]:
            speed = round((cfg.speed[0] + speed_u * (cfg.speed[1] - cfg.speed[0])) * _SPEED_GRID) / _SPEED_GRID

        shift_ms = (shift.double() * 1000 / sr).tolist()
        records = [
            {
                "augmented": bool(a),
                "shift_ms": ms,
                "gain_db": float(gd),
                "snr_db": float(snr) if nz else None,
                "speed": speed if a else 1.0,
                "tilt": float(tl),
                "rt60_s": float(rt) if rv else None,
                "drr_db": float(dr) if rv else None,
            }
            for a, ms, gd, nz, snr, tl, rv, rt, dr in zip(
                augmented.tolist(),
                shift_ms,
                gain_db.tolist(),
                noisy.tolist(),
                snr_db.tolist(),
                tilt.tolist(),
                reverberant.tolist(),
                rt60.tolist(),
                drr.tolist(),
            )
        ]
        idx = augmented.nonzero().squeeze(1)
        if not len(idx):
            return waves.clone(), records
        dev = waves.device
        idx_dev = idx.to(dev)
        everyone = len(idx) == batch
        x = waves if everyone else waves[idx_dev]  # may alias the input until the gain step copies it
        if speed != 1.0:
            import torchaudio.functional as AF  # deferred: only speed perturbation needs torchaudio

            # Reading k/100 samples as 1 speeds playback up by k/100 (shorter clip, higher pitch).
            x = _fit_length(AF.resample(x, round(speed * _SPEED_GRID), _SPEED_GRID), n)
        s = shift[idx]
        if bool(s.any()):
            # Row i of the zero-padded clip's sliding windows, started at pad - s_i, is the clip delayed by s_i
            # with zeros shifted in: one strided gather, no (batch, samples) index tensor (gather was 50x slower).
            pad = int(s.abs().max())
            windows = nn.functional.pad(x, (pad, pad)).unfold(-1, n, 1)
            x = windows[torch.arange(len(idx), device=dev), (pad - s).to(dev)]
        x = x * (10 ** (gain_db[idx] / 20)).to(dev, x.dtype)[:, None]  # out of place: x is ours from here
        rooms = reverberant[idx].nonzero().squeeze(1)
        if len(rooms):
            length = max(2, math.ceil(cfg.reverb_rt60_s[1] * sr))  # the longest the range allows: one length stacks
            chosen = idx[rooms]
            responses = room_responses(rt60[chosen], drr[chosen], sr, length, g)
            rooms_dev = rooms.to(dev)
            x = x.index_copy(0, rooms_dev, _reverberate(x[rooms_dev], responses))
        a = tilt[idx]
        if bool(a.any()):
            previous = nn.functional.pad(x[:, :-1], (1, 0))
            x = x - a.to(dev, x.dtype)[:, None] * previous
        rows = noisy[idx].nonzero().squeeze(1)
        if len(rows):
            rows_dev = rows.to(dev)
            noise = torch.randn(len(rows), n, generator=g).to(dev, x.dtype)
            signal_norm = torch.linalg.vector_norm(x, dim=1)[rows_dev]  # cheaper than copying the rows out
            noise_norm = torch.linalg.vector_norm(noise, dim=1).clamp_min(1e-12)
            scale = signal_norm / (noise_norm * (10 ** (snr_db[idx[rows]] / 20)).to(dev, x.dtype))
            noise.mul_(scale[:, None])
            if len(rows) == len(idx):
                x.add_(noise)
            else:
                x.index_add_(0, rows_dev, noise)
        if everyone:
            return x, records
        out = waves.clone()
        out[idx_dev] = x
        return out, records


def vtlp_warp(feats: torch.Tensor, bin_hz: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(batch, 1, bins, time) features with each example's frequency axis warped by its factor alpha."""
    lo, hi, t = vtlp_sources(bin_hz, alpha)

    def rows(idx: torch.Tensor) -> torch.Tensor:
        return feats.gather(2, idx.to(feats.device)[:, None, :, None].expand(-1, 1, -1, feats.shape[-1]))

    t = t.to(feats.device, feats.dtype)[:, None, :, None]
    return rows(lo) * (1 - t) + rows(hi) * t


def vtlp_sources(bin_hz: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each output bin of a warp by alpha reads from: (lo, hi, t), each (len(alpha), bins); output bin i
    is source bin lo[i] * (1 - t[i]) + source bin hi[i] * t[i].

    The piecewise-linear warp of Jaitly & Hinton (2013) maps source frequency f to alpha*f up to the kink and then
    linearly onto the top bin, so it keeps the top bin fixed. Each output bin takes the source spectrum at the
    frequency that warps onto it, interpolated linearly between the two source bins around it. Training's
    augmentation (SpecAugment) and test-time views (models.test_time) both warp with it.
    """
    top = bin_hz[-1]
    kink = _VTLP_KINK * top * torch.clamp(alpha, max=1.0)[:, None]  # where the warped axis bends, in output Hz
    source_kink = kink / alpha[:, None]
    f = bin_hz[None, :].to(alpha.dtype)
    upper = kink + (top - kink) * (f - source_kink) / (top - source_kink)
    warped = torch.where(f <= source_kink, alpha[:, None] * f, upper)  # (batch, bins): where each bin lands
    targets = f.expand_as(warped).contiguous()
    hi = torch.searchsorted(warped, targets).clamp(1, len(bin_hz) - 1)
    lo = hi - 1
    w_lo, w_hi = warped.gather(1, lo), warped.gather(1, hi)
    t = ((targets - w_lo) / (w_hi - w_lo)).clamp(0.0, 1.0)  # beyond the ends: the edge bin
    return lo, hi, t


class SpecAugment(nn.Module):
    """Feature-level augmentation on (batch, 1, freq, time), in training mode only: a vocal-tract-length warp of
    the frequency axis (when `vtlp` is not [1, 1]), then time and frequency stripe masks.

    Masked cells take the example's own mean (about 0, since LogMel standardises per clip), so a mask
    reads as "no information" rather than as the silence that the log floor would suggest. Stripes may
    overlap, so an example can end up with fewer masked columns than the widths add up to.
    """

    def __init__(self, cfg: AugmentConfig, bin_hz: torch.Tensor | None = None):
        super().__init__()
        self.time_masks, self.time_width = cfg.spec_time_masks, cfg.spec_time_mask_frames
        self.freq_masks, self.freq_width = cfg.spec_freq_masks, cfg.spec_freq_mask_bins
        self.vtlp = (float(cfg.vtlp[0]), float(cfg.vtlp[1])) if cfg.warps else None
        if self.vtlp is not None and bin_hz is None:
            raise ValueError("data.augment.vtlp needs the front end's bin frequencies (a bin_frequencies() method)")
        self.bin_hz = None if bin_hz is None else bin_hz.detach().to("cpu", torch.float64)

    @staticmethod
    def _stripes(batch: int, size: int, count: int, width: int, g: torch.Generator | None, dev) -> torch.Tensor:
        """(batch, size) bool: `count` stripes per row, width U[0, width], start uniform where it fits."""
        if count == 0 or width == 0:
            return torch.zeros(batch, size, dtype=torch.bool, device=dev)
        widths = torch.randint(0, min(width, size) + 1, (batch, count), generator=g, device=dev)
        starts = (torch.rand(batch, count, generator=g, device=dev) * (size - widths + 1)).long()
        pos = torch.arange(size, device=dev)
        return ((pos >= starts[..., None]) & (pos < (starts + widths)[..., None])).any(1)

    def forward(self, feats: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return feats
        batch, _, n_freq, n_time = feats.shape
        # Draw on the generator's device so a CPU generator gives the same masks for CPU and GPU features.
        dev = generator.device if generator is not None else feats.device
        if self.vtlp is not None:
            if len(self.bin_hz) != n_freq:
                raise ValueError(
                    f"data.augment.vtlp: the front end reports {len(self.bin_hz)} bins, the features have {n_freq}"
                )
            low, high = self.vtlp
            alpha = low + (high - low) * torch.rand(batch, generator=generator, dtype=torch.float64, device=dev).cpu()
            feats = vtlp_warp(feats, self.bin_hz, alpha)
        if self.time_masks == 0 and self.freq_masks == 0:
            return feats
        t_mask = self._stripes(batch, n_time, self.time_masks, self.time_width, generator, dev).to(feats.device)
        f_mask = self._stripes(batch, n_freq, self.freq_masks, self.freq_width, generator, dev).to(feats.device)
        masked = f_mask[:, None, :, None] | t_mask[:, None, None, :]
        fill = feats.mean(dim=(1, 2, 3), keepdim=True)
        return torch.where(masked, fill, feats)


def build(
    cfg: AugmentConfig, sample_rate: int, seed: int, bin_hz: torch.Tensor | None = None
) -> tuple[WaveAugment | None, SpecAugment | None]:
    """The two augmenters, each None when switched off, so callers can skip them with one `if`.

    bin_hz: the centre frequency of each feature bin, which only the vocal-tract-length warp needs.
    """
    wave = WaveAugment(cfg, sample_rate, seed) if cfg.prob > 0 else None
    spec = SpecAugment(cfg, bin_hz) if cfg.spec_time_masks > 0 or cfg.spec_freq_masks > 0 or cfg.warps else None
    return wave, spec
