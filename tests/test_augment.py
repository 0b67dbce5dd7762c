"""Augmentation: reproducible from (seed, key), records that match what was done, SpecAugment stripes."""

from __future__ import annotations

import math

import pytest
import torch

from scopeml.config.schema import AugmentConfig
from scopeml.data.augment import SpecAugment, WaveAugment, build, room_responses

SR = 16000


def _speech_like(batch: int = 16, n: int = SR, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    freqs = 200 + 600 * torch.rand(batch, 1, generator=g)
    return (0.3 * torch.sin(2 * math.pi * freqs * t) + 0.05 * torch.randn(batch, n, generator=g)).float()


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.double().pow(2).mean(-1).sqrt()


FULL = dict(
    prob=0.5, time_shift_ms=50.0, gain_db=[-6.0, 6.0], noise_prob=0.5, noise_snr_db=[5.0, 30.0], speed=[0.9, 1.1]
)


def test_same_key_same_output_other_key_differs_input_untouched():
    waves = _speech_like()
    before = waves.clone()
    aug = WaveAugment(AugmentConfig(**FULL), SR, seed=7)
    a, rec_a = aug(waves, (3, 5))
    b, rec_b = WaveAugment(AugmentConfig(**FULL), SR, seed=7)(waves, (3, 5))
    assert torch.equal(a, b) and rec_a == rec_b
    c, rec_c = aug(waves, (3, 6))
    assert not torch.equal(a, c) and rec_a != rec_c
    d, _ = WaveAugment(AugmentConfig(**FULL), SR, seed=8)(waves, (3, 5))
    assert not torch.equal(a, d)
    assert torch.equal(waves, before)
    assert a.shape == waves.shape and a.dtype == waves.dtype
    assert set(rec_a[0]) == {"augmented", "shift_ms", "gain_db", "snr_db", "speed", "tilt", "rt60_s", "drr_db"}


def test_unaugmented_clips_are_bit_identical():
    waves = _speech_like(32)
    out, recs = WaveAugment(AugmentConfig(**FULL), SR, seed=1)(waves, (0, 0))
    flags = [r["augmented"] for r in recs]
    assert any(flags) and not all(flags)
    for i, r in enumerate(recs):
        if r["augmented"]:
            assert not torch.equal(out[i], waves[i])
        else:
            assert torch.equal(out[i], waves[i])
            assert r == {
                "augmented": False,
                "shift_ms": 0.0,
                "gain_db": 0.0,
                "snr_db": None,
                "speed": 1.0,
                "tilt": 0.0,
                "rt60_s": None,
                "drr_db": None,
            }


def test_prob_zero_is_identity():
    waves = _speech_like()
    cfg = AugmentConfig(**{**FULL, "prob": 0.0})
    out, recs = WaveAugment(cfg, SR, seed=1)(waves, (0, 0))
    assert torch.equal(out, waves)
    assert not any(r["augmented"] for r in recs)


def test_time_shift_moves_a_click_by_the_recorded_amount():
    waves = torch.zeros(16, SR)
    onset = SR // 2
    waves[:, onset:] = 0.5  # a step, so the onset survives whichever way it moves
    cfg = AugmentConfig(prob=1.0, time_shift_ms=100.0)
    out, recs = WaveAugment(cfg, SR, seed=3)(waves, (1, 2))
    shifts = []
    for i, r in enumerate(recs):
        assert r["augmented"] and abs(r["shift_ms"]) <= 100.0
        moved = int((out[i].abs() > 0.25).nonzero()[0]) - onset
        assert abs(moved * 1000 / SR - r["shift_ms"]) <= 1000 / SR + 1e-9
        shifts.append(r["shift_ms"])
    assert min(shifts) < 0 < max(shifts)  # both directions, zero-filled at the front when delayed
    delayed = max(range(16), key=lambda i: recs[i]["shift_ms"])
    assert float(out[delayed, :onset].abs().max()) == 0.0


def test_gain_matches_measured_rms_ratio():
    waves = _speech_like()
    cfg = AugmentConfig(prob=1.0, gain_db=[-12.0, 12.0])
    out, recs = WaveAugment(cfg, SR, seed=4)(waves, (0, 1))
    measured = 20 * torch.log10(_rms(out) / _rms(waves))
    for m, r in zip(measured.tolist(), recs):
        assert -12.0 <= r["gain_db"] <= 12.0
        assert abs(m - r["gain_db"]) < 0.1
    assert len({round(r["gain_db"], 3) for r in recs}) > 1


def test_noise_snr_matches_record():
    waves = _speech_like(32)
    before = waves.clone()
    cfg = AugmentConfig(prob=1.0, noise_prob=0.5, noise_snr_db=[5.0, 25.0])
    out, recs = WaveAugment(cfg, SR, seed=5)(waves, (2, 0))
    assert torch.equal(waves, before)  # every clip augmented: the noise is added to a copy, not the input
    with_noise = [i for i, r in enumerate(recs) if r["snr_db"] is not None]
    assert 0 < len(with_noise) < 32
    for i, r in enumerate(recs):
        if r["snr_db"] is None:
            assert torch.equal(out[i], waves[i])
            continue
        assert 5.0 <= r["snr_db"] <= 25.0
        snr = 20 * math.log10(float(_rms(waves[i]) / _rms(out[i] - waves[i])))
        assert abs(snr - r["snr_db"]) < 1.0


def test_tilt_filter_changes_the_spectral_balance_by_the_recorded_coefficient():
    g = torch.Generator().manual_seed(0)
    waves = torch.randn(16, SR, generator=g)  # white: every band starts with the same power
    cfg = AugmentConfig(prob=1.0, tilt=[-0.5, 0.5])
    out, recs = WaveAugment(cfg, SR, seed=9)(waves, (0, 3))
    coefs = [r["tilt"] for r in recs]
    assert min(coefs) < 0 < max(coefs) and all(-0.5 <= a <= 0.5 for a in coefs)
    spectrum = torch.fft.rfft(out.double()).abs().pow(2)
    freqs = torch.fft.rfftfreq(SR, 1 / SR)
    low, high = spectrum[:, freqs < 1000].mean(1), spectrum[:, freqs > 7000].mean(1)

    def expected(a: float, band: torch.Tensor) -> float:
        w = 2 * math.pi * freqs[band] / SR
        return float((1 - 2 * a * torch.cos(w) + a * a).mean())  # |1 - a e^{-jw}|^2, averaged over the band

    for i, a in enumerate(coefs):
        ratio_db = 10 * math.log10(float(high[i] / low[i]))
        want_db = 10 * math.log10(expected(a, freqs > 7000) / expected(a, freqs < 1000))
        assert abs(ratio_db - want_db) < 0.5, (a, ratio_db, want_db)


def test_tilt_off_keeps_the_random_stream_of_configs_without_it():
    waves = _speech_like()
    with_default, recs = WaveAugment(AugmentConfig(**FULL), SR, seed=2)(waves, (1, 1))
    explicit_off, _ = WaveAugment(AugmentConfig(**FULL, tilt=[0.0, 0.0]), SR, seed=2)(waves, (1, 1))
    assert torch.equal(with_default, explicit_off) and all(r["tilt"] == 0.0 for r in recs)
    tilted, _ = WaveAugment(AugmentConfig(**FULL, tilt=[-0.3, 0.3]), SR, seed=2)(waves, (1, 1))
    assert not torch.equal(with_default, tilted)


def _decay_time_s(response: torch.Tensor, sr: int) -> float:
    """RT60 read off a response the way acousticians do: Schroeder's backward-integrated energy of its tail, the
    slope of its fall from -5 to -25 dB (T20), extrapolated to 60 dB."""
    energy = response[1:].double().pow(2).flip(0).cumsum(0).flip(0)
    level = 10 * torch.log10(energy / energy[0])
    start, end = int((level > -5).sum()), int((level > -25).sum())
    return (end - start) / sr * 60 / 20


def test_room_responses_decay_by_their_reverberation_time_with_their_direct_to_reverberant_ratio():
    rt60, drr = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64), torch.tensor([0.0, 6.0, 15.0], dtype=torch.float64)
    responses = room_responses(rt60, drr, SR, 2 * SR, torch.Generator().manual_seed(0))
    assert responses.shape == (3, 2 * SR) and torch.equal(responses[:, 0], torch.ones(3, dtype=torch.float64))
    for h, want_rt60, want_drr in zip(responses, rt60.tolist(), drr.tolist()):
        assert 10 * math.log10(1 / float(h[1:].pow(2).sum())) == pytest.approx(want_drr, abs=1e-9)
        assert _decay_time_s(h, SR) == pytest.approx(want_rt60, rel=0.1)


def test_reverberated_clips_keep_their_level_and_carry_the_recorded_room():
    # An impulse played in each room comes out as the room's response itself, so the output can be read back.
    impulses = torch.zeros(12, SR)
    impulses[:, 0] = 1.0
    cfg = AugmentConfig(prob=1.0, reverb_prob=0.5, reverb_rt60_s=[0.2, 0.6], reverb_drr_db=[0.0, 10.0])
    out, recs = WaveAugment(cfg, SR, seed=3)(impulses, (0, 1))
    rooms = [i for i, r in enumerate(recs) if r["rt60_s"] is not None]
    assert 0 < len(rooms) < 12
    assert torch.allclose(_rms(out), _rms(impulses))  # the room keeps the level; the gain is the level's record
    for i, r in enumerate(recs):
        if r["rt60_s"] is None:
            assert torch.equal(out[i], impulses[i]) and r["drr_db"] is None
            continue
        h = out[i].double()
        assert 10 * math.log10(float(h[0] ** 2 / h[1:].pow(2).sum())) == pytest.approx(r["drr_db"], abs=1e-6)
        assert _decay_time_s(h, SR) == pytest.approx(r["rt60_s"], rel=0.15)


def test_room_off_keeps_the_random_stream_of_configs_without_it():
    waves = _speech_like()
    with_default, recs = WaveAugment(AugmentConfig(**FULL), SR, seed=2)(waves, (1, 1))
    explicit_off, _ = WaveAugment(AugmentConfig(**FULL, reverb_prob=0.0), SR, seed=2)(waves, (1, 1))
    assert torch.equal(with_default, explicit_off) and all(r["rt60_s"] is None for r in recs)
    roomy, _ = WaveAugment(AugmentConfig(**FULL, reverb_prob=1.0), SR, seed=2)(waves, (1, 1))
    assert not torch.equal(with_default, roomy)


def test_speed_scales_frequency_and_keeps_length():
    n, f0 = SR, 500.0
    waves = torch.sin(2 * math.pi * f0 * torch.arange(n) / SR).repeat(4, 1).float()
    cfg = AugmentConfig(prob=1.0, speed=[0.9, 1.1])
    aug = WaveAugment(cfg, SR, seed=6)
    factors = set()
    for key in range(6):
        out, recs = aug(waves, (0, key))
        assert out.shape == waves.shape
        speed = recs[0]["speed"]
        assert all(r["speed"] == speed for r in recs) and 0.9 <= speed <= 1.1  # one factor per batch
        factors.add(speed)
        window = torch.hann_window(n // 2)
        mid = out[0, n // 4 : n // 4 + n // 2]  # the middle is filled at any factor in range
        peak_hz = int(torch.fft.rfft(mid * window).abs().argmax()) * SR / (n // 2)
        assert abs(peak_hz / (f0 * speed) - 1) < 0.03
    assert len(factors) > 1 and factors != {1.0}


def test_spec_augment_eval_is_identity():
    spec = SpecAugment(AugmentConfig(spec_time_masks=2, spec_freq_masks=2)).eval()
    feats = torch.randn(4, 1, 40, 101)
    assert spec(feats) is feats


def _constant(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Per example (batch, positions): lines along `dim` whose cells all hold one value."""
    return (x == x.select(dim, 0).unsqueeze(dim)).all(dim)


@pytest.mark.parametrize("axis", ["time", "freq"])
def test_spec_augment_masks_stripes(axis):
    count, width = (2, 10) if axis == "time" else (3, 5)
    cfg = AugmentConfig(
        **(
            {"spec_time_masks": count, "spec_time_mask_frames": width}
            if axis == "time"
            else {"spec_freq_masks": count, "spec_freq_mask_bins": width}
        )
    )
    spec = SpecAugment(cfg).train()
    feats = torch.randn(64, 1, 40, 101)
    out = spec(feats, torch.Generator().manual_seed(0))
    again = spec(feats, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, spec(feats, torch.Generator().manual_seed(1)))
    x = out[:, 0]  # (batch, freq, time)
    lines = _constant(x, 1) if axis == "time" else _constant(x, 2)  # masked columns / masked rows
    means = feats.mean(dim=(1, 2, 3))
    totals = lines.sum(1)
    for b in range(64):
        hit = lines[b].nonzero().squeeze(1)
        if len(hit):
            assert torch.allclose(x[b, :, hit] if axis == "time" else x[b, hit, :], means[b])
            runs = 1 + int((hit.diff() > 1).sum())
            assert runs <= count
        assert totals[b] <= count * width
        unmasked = ~lines[b]
        orig = feats[b, 0]
        kept = (x[b][:, unmasked], orig[:, unmasked]) if axis == "time" else (x[b][unmasked], orig[unmasked])
        assert torch.equal(*kept)
    assert totals.float().mean() > 0.25 * count * width  # widths are really drawn up to the maximum
    assert int(totals.max()) > width  # more than one stripe lands somewhere


def test_build_switches_parts_off():
    assert build(AugmentConfig(), SR, 0) == (None, None)
    wave, spec = build(AugmentConfig(prob=0.3), SR, 0)
    assert isinstance(wave, WaveAugment) and spec is None
    wave, spec = build(AugmentConfig(spec_freq_masks=1), SR, 0)
    assert wave is None and isinstance(spec, SpecAugment)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"tilt": [-1.0, 0.2]}, "tilt"),
        ({"tilt": [0.3, 0.1]}, "tilt"),
        ({"speed": [0.4, 1.0]}, "speed"),
        ({"reverb_prob": 1.5}, "reverb_prob"),
        ({"reverb_rt60_s": [0.01, 0.5]}, "reverb_rt60_s"),
        ({"reverb_rt60_s": [0.5, 3.0]}, "reverb_rt60_s"),
        ({"reverb_drr_db": [10.0, 0.0]}, "reverb_drr_db"),
    ],
)
def test_out_of_range_factors_name_their_key(overrides, key):
    assert key in [k for k, _ in AugmentConfig(**overrides).check()]
    assert AugmentConfig(tilt=[-0.5, 0.5]).check() == []


def _logmel():
    from scopeml.models.frontend import LogMel

    return LogMel(SR, n_mels=40, n_fft=480, win_length=480, hop_length=160, f_min=20.0, f_max=None)


def test_bin_frequencies_are_where_the_mel_filters_peak():
    front = _logmel()
    fb = front.mel.mel_scale.fb  # (fft bins, mel bands)
    peaks = torch.linspace(0, SR / 2, fb.shape[0])[fb.argmax(0)]
    # the filters peak on the FFT grid (16.7 Hz apart), the analytic centres lie between its points
    assert (peaks - front.bin_frequencies().float()).abs().max() <= SR / 2 / (fb.shape[0] - 1)


@pytest.mark.parametrize("alpha", [0.85, 1.0, 1.15])
def test_vtlp_moves_a_formant_by_its_factor_and_keeps_the_top_bin(alpha):
    from scopeml.data.augment import vtlp_warp

    front = _logmel()
    bin_hz = front.bin_frequencies()
    t = torch.arange(SR) / SR
    feats = front(torch.sin(2 * math.pi * 1000 * t)[None])  # a 1 kHz tone: one bright band
    out = vtlp_warp(feats, bin_hz, torch.tensor([alpha], dtype=torch.float64))
    peak_hz = float(bin_hz[out[0, 0].mean(-1).argmax()])
    nearest = float(bin_hz[(bin_hz - 1000 * alpha).abs().argmin()])
    assert peak_hz == nearest  # below the kink the axis scales by alpha: 850, 1000 or 1150 Hz
    assert torch.allclose(out[0, 0, -1], feats[0, 0, -1])  # the top bin maps onto itself
    if alpha == 1.0:
        assert torch.allclose(out, feats)


def test_spec_augment_draws_one_warp_per_clip_reproducibly():
    front = _logmel()
    spec = SpecAugment(AugmentConfig(vtlp=[0.9, 1.1]), front.bin_frequencies()).train()
    feats = front(_speech_like(8))
    out = spec(feats, torch.Generator().manual_seed(0))
    assert torch.equal(out, spec(feats, torch.Generator().manual_seed(0)))
    changed = [not torch.allclose(out[b], feats[b]) for b in range(8)]
    assert all(changed)  # a continuous factor is never exactly 1
    assert spec.eval()(feats) is feats


def test_vtlp_needs_a_front_end_that_says_where_its_bins_lie():
    from conftest import composed

    from scopeml.config import ConfigError
    from scopeml.training.module import KeywordSpotter

    cfg = composed()
    plain = KeywordSpotter(cfg["model"], cfg["frontend"], cfg["hparams"], ["a", "b"], SR, augment={"vtlp": [0.9, 1.1]})
    assert plain.spec_augment is not None and plain.spec_augment.vtlp == (0.9, 1.1)
    user_front = {"_target_": "user_parts.FramePower"}
    with pytest.raises(ConfigError, match=r"data.augment.vtlp: the front end FramePower has no bin_frequencies"):
        KeywordSpotter(cfg["model"], user_front, cfg["hparams"], ["a", "b"], SR, augment={"vtlp": [0.9, 1.1]})
    KeywordSpotter(cfg["model"], user_front, cfg["hparams"], ["a", "b"], SR, augment={"spec_time_masks": 1})
    assert [k for k, _ in AugmentConfig(vtlp=[0.5, 1.1]).check()] == ["vtlp"]
    assert [k for k, _ in AugmentConfig(vtlp=[1.1, 0.9]).check()] == ["vtlp"]
