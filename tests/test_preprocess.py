"""Preprocessing on real audio with planted, known properties: silence lengths, levels, placement."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio.functional as F

from scopeml.config.schema import NormalizeConfig, PreprocessConfig, TrimConfig
from scopeml.data import espeak
from scopeml.data.audio import fix_length, read_audio, resample
from scopeml.data.preprocess import apply, measure, normalize, speech_bounds, trim

FSDD_RECORDINGS = Path(__file__).resolve().parents[2] / "shared/datasets/fsdd/recordings"


def tone(ms: float, sr: int, rms_db: float = -20.0) -> np.ndarray:
    """A 220 Hz harmonic tone with 5 ms raised-cosine ramps, scaled to rms_db dBFS."""
    t = np.arange(round(ms * sr / 1000)) / sr
    x = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in (1, 2, 3, 4))
    ramp = min(len(t) // 2, round(0.005 * sr))
    env = np.ones(len(t))
    env[:ramp] = env[len(t) - ramp :][::-1] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    x = x * env
    return (x * 10 ** (rms_db / 20) / np.sqrt(np.mean(x**2))).astype(np.float32)


def noise(ms: float, sr: int, rms_db: float = -70.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(round(ms * sr / 1000)) * 10 ** (rms_db / 20)).astype(np.float32)


def planted(speech: np.ndarray, sr: int, lead_ms: float = 200.0, trail_ms: float = 350.0) -> np.ndarray:
    return np.concatenate([noise(lead_ms, sr, seed=1), speech, noise(trail_ms, sr, seed=2)])


def word(text: str, sr: int) -> np.ndarray:
    return resample(espeak.synthesize(text), espeak.sample_rate(), sr)


def lufs(x: np.ndarray, sr: int) -> float:
    """Reference loudness; a short clip is looped to 4 s (the module loops to 1 s: a different phase)."""
    if len(x) < 0.4 * sr:
        x = np.tile(x, math.ceil(4 * sr / len(x)))
    return float(F.loudness(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None], sr))


@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("lead_ms, trail_ms", [(200, 350), (50, 120), (0, 500), (333, 0), (777, 41)])
def test_measure_finds_planted_silence(sr, lead_ms, trail_ms):
    stats = measure(planted(tone(300, sr), sr, lead_ms, trail_ms), sr)
    assert abs(stats["lead_ms"] - lead_ms) <= 15 and abs(stats["trail_ms"] - trail_ms) <= 15, stats
    assert stats["lead_ms"] + stats["speech_ms"] + stats["trail_ms"] == pytest.approx(stats["duration_ms"])
    assert not stats["silent"] and abs(stats["peak_dbfs"] - stats["rms_dbfs"]) < 15
    assert all(type(v) in (float, bool) for v in stats.values())


def test_measure_of_short_and_clipped_clips():
    sr = 16000
    short = measure(tone(300, sr), sr)
    assert math.isnan(short["loudness_lufs"]) and short["clipped_fraction"] == 0.0
    loud = np.clip(tone(500, sr, rms_db=0.0), -1, 1)
    stats = measure(loud, sr)
    assert 0.0 < stats["clipped_fraction"] < 1.0 and stats["peak_dbfs"] == pytest.approx(0.0, abs=1e-3)
    assert stats["loudness_lufs"] == pytest.approx(lufs(loud, sr), abs=1e-4)


@pytest.mark.parametrize("pad_ms", [0.0, 30.0, 80.0])
def test_energy_trim_keeps_pad(pad_ms):
    sr = 16000
    out = trim(planted(tone(300, sr), sr), sr, TrimConfig(method="energy", pad_ms=pad_ms))
    stats = measure(out, sr)
    assert abs(stats["lead_ms"] - pad_ms) <= 15 and abs(stats["trail_ms"] - pad_ms) <= 15, stats
    assert abs(stats["speech_ms"] - 300) <= 15


@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("text", ["yes", "seven"])
def test_vad_trim_removes_leading_silence_of_a_word(sr, text):
    x = planted(word(text, sr), sr)
    before = measure(x, sr)
    out = trim(x, sr, TrimConfig(method="vad", pad_ms=30.0))
    after = measure(out, sr)
    assert after["lead_ms"] < 120, (before, after)
    assert after["trail_ms"] < before["trail_ms"] - 200, (before, after)
    assert after["speech_ms"] >= before["speech_ms"] - 20  # the word itself survives


# eSpeak words peak 17-20 dB above their loudness, so at -16 LUFS they clip (see the next test).
@pytest.mark.parametrize(
    "clip, target",
    [
        ("tone_700ms", -23.0),
        ("tone_700ms", -16.0),
        ("tone_250ms", -23.0),
        ("tone_250ms", -16.0),
        ("word_825ms", -23.0),
        ("word_825ms", -20.0),
    ],
)
def test_loudness_normalization_hits_target(clip, target):
    sr = 16000
    if clip == "word_825ms":
        x = planted(word("yes", sr) * 0.1, sr, 100, 100)
    else:
        x = planted(tone(500, sr, rms_db=-40), sr, 100, 100) if clip == "tone_700ms" else tone(250, sr, rms_db=-40)
    out = normalize(x, sr, NormalizeConfig(method="loudness", target_db=target))
    assert len(out) == len(x) and out.dtype == np.float32 and np.abs(out).max() < 1.0
    assert lufs(out, sr) == pytest.approx(target, abs=0.5)


def test_loudness_target_that_would_clip_lands_low():
    sr = 16000
    out = normalize(word("yes", sr) * 0.1, sr, NormalizeConfig(method="loudness", target_db=-16.0))
    assert measure(out, sr)["clipped_fraction"] > 0 and -18.0 < lufs(out, sr) < -16.5  # ~0.9 dB low


@pytest.mark.parametrize("method", ["rms", "peak"])
@pytest.mark.parametrize("target", [-30.0, -12.0])
def test_rms_and_peak_normalization_hit_target(method, target):
    sr = 8000
    out = normalize(planted(tone(400, sr, rms_db=-33), sr), sr, NormalizeConfig(method=method, target_db=target))
    assert measure(out, sr)[f"{method}_dbfs"] == pytest.approx(target, abs=0.1)


def test_max_gain_limits_amplification_but_not_attenuation():
    sr = 16000
    quiet = tone(500, sr, rms_db=-55.0)  # above the -60 dBFS silence floor, 35 dB below the target
    out = normalize(quiet, sr, NormalizeConfig(method="rms", target_db=-20.0, max_gain_db=30.0))
    assert measure(out, sr)["rms_dbfs"] == pytest.approx(-25.0, abs=0.1)
    out = normalize(quiet, sr, NormalizeConfig(method="loudness", target_db=-10.0, max_gain_db=12.0))
    assert lufs(out, sr) - lufs(quiet, sr) == pytest.approx(12.0, abs=0.05)
    loud = tone(500, sr, rms_db=-3.0)
    out = normalize(loud, sr, NormalizeConfig(method="rms", target_db=-65.0, max_gain_db=0.0))
    assert measure(out, sr)["rms_dbfs"] == pytest.approx(-65.0, abs=0.1)


@pytest.mark.parametrize(
    "x", [np.zeros(11200, np.float32), noise(700, 16000, rms_db=-70)], ids=["zeros", "noise_-70dBFS"]
)
def test_silent_clip_passes_through(x):
    sr = 16000
    stats = measure(x, sr)
    assert stats["silent"] and stats["lead_ms"] == stats["duration_ms"] and stats["trail_ms"] == stats["speech_ms"] == 0
    assert math.isnan(stats["loudness_lufs"]) and speech_bounds(x, sr) is None
    for method in ("energy", "vad"):
        assert np.array_equal(trim(x, sr, TrimConfig(method=method)), x)
    for method in ("peak", "rms", "loudness"):
        assert np.array_equal(normalize(x, sr, NormalizeConfig(method=method)), x)
    cfg = PreprocessConfig(trim=TrimConfig(method="vad"), normalize=NormalizeConfig(method="loudness"))
    out = apply(x, sr, cfg)
    assert out.shape == (16000,) and out.dtype == np.float32
    if not x.any():
        assert not out.any()


def test_apply_downmixes_and_resamples_stereo():
    left = tone(500, 8000, rms_db=-20)
    out = apply(np.stack([left, 0.5 * left]), 8000, PreprocessConfig(sample_rate=16000, clip_seconds=1.0))
    assert out.shape == (16000,) and out.dtype == np.float32
    body = out[4000:12000]  # 0.5 s centered in 1 s
    assert 20 * np.log10(np.sqrt(np.mean(body**2))) == pytest.approx(-20 + 20 * np.log10(0.75), abs=0.2)
    assert np.abs(out[:3900]).max() < 1e-3 and np.abs(out[12100:]).max() < 1e-3


@pytest.mark.parametrize(
    "pad, where", [("start", slice(0, 4800)), ("end", slice(11200, 16000)), ("center", slice(5600, 10400))]
)
def test_apply_places_audio_by_pad_mode(pad, where):
    x = tone(300, 16000)
    out = apply(x, 16000, PreprocessConfig(clip_seconds=1.0, pad=pad))
    assert np.array_equal(out[where], x)
    rest = np.ones(16000, bool)
    rest[where] = False
    assert not out[rest].any()


def test_fix_length_modes_crop_and_pad():
    x = np.arange(1, 11, dtype=np.float32)
    assert np.array_equal(fix_length(x, 4), x[3:7]) and np.array_equal(fix_length(x, 4, mode="center"), x[3:7])
    assert np.array_equal(fix_length(x, 4, mode="start"), x[:4]) and np.array_equal(fix_length(x, 4, mode="end"), x[6:])
    assert np.array_equal(fix_length(x, 13), np.r_[0, x, 0, 0])
    assert np.array_equal(fix_length(x, 13, mode="start"), np.r_[x, 0, 0, 0])
    assert np.array_equal(fix_length(x, 13, mode="end"), np.r_[0, 0, 0, x])
    with pytest.raises(ValueError, match="mode"):
        fix_length(x, 4, mode="left")


@pytest.mark.skipif(not FSDD_RECORDINGS.is_dir(), reason=f"FSDD recordings not found at {FSDD_RECORDINGS}")
def test_fsdd_measure_and_loudness_normalization():
    files = sorted(FSDD_RECORDINGS.glob("*.wav"))[::100][:20]
    assert len(files) == 20
    cfg = PreprocessConfig(
        sample_rate=16000, clip_seconds=10.0, pad="start", normalize=NormalizeConfig(method="loudness", target_db=-23.0)
    )
    checked = 0
    for path in files:
        samples, sr = read_audio(path)
        stats = measure(samples[0], sr)
        assert stats["lead_ms"] + stats["speech_ms"] + stats["trail_ms"] == pytest.approx(stats["duration_ms"], abs=1.0)
        out = apply(samples, sr, cfg)
        audio = out[: round(samples.shape[-1] * cfg.sample_rate / sr)]  # pad="start": the rest is zeros
        if stats["duration_ms"] >= 400 and not stats["silent"]:
            assert lufs(audio, cfg.sample_rate) == pytest.approx(-23.0, abs=0.5), path.name
            checked += 1
    assert checked >= 10
