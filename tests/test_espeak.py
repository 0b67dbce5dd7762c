"""Tests for scopeml.data.espeak against the real eSpeak NG library (no mocks)."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from scopeml.data import espeak  # noqa: E402


def _spectral_centroid(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(x), 1.0 / sr)
    return float((freqs * spectrum).sum() / spectrum.sum())


def _median_f0(x: np.ndarray, sr: int, fmin: int = 50, fmax: int = 500, n: int = 1024) -> float:
    """YIN-style F0 (cumulative-mean-normalized difference) over the louder frames."""
    lo, hi = sr // fmax, sr // fmin
    rms, estimates = np.sqrt(np.mean(x**2)), []
    for start in range(0, len(x) - n - hi, n // 2):
        frame = x[start : start + n + hi].astype(np.float64)
        if np.sqrt(np.mean(frame[:n] ** 2)) < rms:
            continue
        diff = np.array([np.sum((frame[:n] - frame[lag : lag + n]) ** 2) for lag in range(1, hi + 1)])
        cmnd = (diff * np.arange(1, hi + 1) / np.cumsum(diff))[lo - 1 :]
        below = np.nonzero(cmnd < 0.3)[0]
        lag = int(below[0]) if below.size else int(np.argmin(cmnd))
        while lag + 1 < len(cmnd) and cmnd[lag + 1] < cmnd[lag]:
            lag += 1
        estimates.append(sr / (lag + lo))
    return float(np.median(estimates))


def test_import_is_lazy() -> None:
    code = "import sys; import scopeml.data.espeak; assert 'espeakng_loader' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sample_rate() -> None:
    sr = espeak.sample_rate()
    assert isinstance(sr, int) and sr > 8000
    assert sr == 22050


def test_list_voices() -> None:
    voices = espeak.list_voices("en")
    assert len(voices) >= 10
    assert "en" in voices
    assert any(v.startswith("en+m") for v in voices)
    assert any(v.startswith("en+f") for v in voices)
    assert voices == sorted(voices) == espeak.list_voices("en")
    assert espeak.list_voices("no-such-language") == []


def test_synthesize_basic() -> None:
    x = espeak.synthesize("yes")
    assert x.dtype == np.float32 and x.ndim == 1 and x.size > 0
    assert np.all(np.abs(x) <= 1.0)
    assert np.sqrt(np.mean(x**2)) > 0.01


def test_deterministic_across_calls_and_history() -> None:
    first = espeak.synthesize("hello there", "en+m3", pitch=60, rate=200)
    espeak.synthesize("something else entirely", "en+klatt", pitch=10, rate=400, pitch_range=90)
    second = espeak.synthesize("hello there", "en+m3", pitch=60, rate=200)
    assert np.array_equal(first, second)
    # Noise-driven variants too (eSpeak's breath/aspiration noise comes from its own RNG).
    assert np.array_equal(espeak.synthesize("yes", "en+whisper"), espeak.synthesize("yes", "en+whisper"))


def test_different_voices_differ() -> None:
    a = espeak.synthesize("yes", "en+m1")
    b = espeak.synthesize("yes", "en+f2")
    assert a.shape != b.shape or not np.array_equal(a, b)


@pytest.mark.parametrize("voice", ["en", "en+m1", "en+f2"])
def test_higher_pitch_raises_f0_and_centroid(voice: str) -> None:
    sr = espeak.sample_rate()
    low, high = espeak.synthesize("hello", voice, pitch=20), espeak.synthesize("hello", voice, pitch=80)
    assert _median_f0(high, sr) > 1.4 * _median_f0(low, sr)  # measured ~1.8x
    assert _spectral_centroid(high, sr) > 1.02 * _spectral_centroid(low, sr)  # measured 3-13%


def test_faster_rate_is_shorter() -> None:
    slow = espeak.synthesize("hello there my friend", rate=100)
    fast = espeak.synthesize("hello there my friend", rate=350)
    assert len(fast) < 0.8 * len(slow)


@pytest.mark.parametrize("voice", ["no_such_voice_xyz", "en+no_such_variant"])
def test_bad_voice_raises(voice: str) -> None:
    with pytest.raises(espeak.EspeakError, match=voice.split("+")[-1]):
        espeak.synthesize("yes", voice)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"pitch": 500}, "pitch"),
        ({"pitch": -1}, "pitch"),
        ({"rate": 10}, "rate"),
        ({"rate": 1000}, "rate"),
        ({"pitch_range": 101}, "pitch_range"),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
    ],
)
def test_invalid_arguments(kwargs: dict, name: str) -> None:
    args = {"text": "yes", **kwargs}
    with pytest.raises(ValueError, match=name):
        espeak.synthesize(**args)


def test_spawned_child_matches_parent() -> None:
    args = ("go", "en+f1", 40, 190)
    parent = espeak.synthesize(*args)
    with mp.get_context("spawn").Pool(1) as pool:
        child = pool.apply(espeak.synthesize, args)
    assert np.array_equal(parent, child)
