"""The one preprocessing definition shared by training, serving and batch scoring.

Pure functions on float32 numpy audio. Levels: dBFS is 20*log10 of the sample RMS or peak (a
full-scale sine has RMS -3 dBFS); loudness is ITU-R BS.1770 integrated loudness in LUFS.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from scopeml.data.audio import check_samples, fix_length, resample, to_mono

if TYPE_CHECKING:
    from scopeml.config.schema import NormalizeConfig, PreprocessConfig, TrimConfig

SILENCE_FLOOR_DBFS = -60.0  # a frame this quiet is never speech, however quiet the loudest frame is
LOUDNESS_BLOCK_S = 0.4  # one BS.1770 gating block: torchaudio cannot measure less
# torchaudio.functional.vad settings. Its defaults (20 measurements/s over 100 ms windows, 0.25 s
# trigger time constant) keep ~100 ms before the onset and miss many short words; these keep
# ~20-40 ms (one window) and trigger on most single digits.
_VAD = dict(measure_freq=50.0, trigger_time=0.1)
_VAD_BOOT_S = 0.35  # vad's boot_time: it learns the noise spectrum from this much leading audio


def _frame_db(x: np.ndarray, sr: int, frame_ms: float) -> tuple[np.ndarray, int]:
    """RMS in dBFS of consecutive frames (the last may be partial), and the frame length."""
    hop = max(1, round(frame_ms * sr / 1000))
    starts = np.arange(0, len(x), hop)
    power = np.add.reduceat(np.square(x, dtype=np.float64), starts) / np.diff(np.append(starts, len(x)))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(power), hop


def speech_bounds(
    x: np.ndarray, sr: int, threshold_db: float = -35.0, frame_ms: float = 10.0
) -> tuple[int, int] | None:
    """Sample indices [start, end) from the first to the last frame whose RMS is within threshold_db of
    the loudest frame's and above -60 dBFS; None if the clip is silent (no frame above the floor)."""
    if len(x) == 0:
        return None
    db, hop = _frame_db(x, sr, frame_ms)
    active = np.flatnonzero(db >= max(db.max() + threshold_db, SILENCE_FLOOR_DBFS))
    if len(active) == 0:
        return None
    return int(active[0] * hop), int(min(len(x), (active[-1] + 1) * hop))


def _loudness(x: np.ndarray, sr: int) -> float:
    """Integrated loudness in LUFS; a clip shorter than one gating block is measured looped.

    Zero-padding would be wrong (the partly silent blocks pull the level down); looping keeps the
    clip's mean power, so the loudness of a short clip is that of the clip played on repeat. NaN when
    everything is below BS.1770's -70 LUFS absolute gate.
    """
    import torch
    import torchaudio.functional as F

    if len(x) < LOUDNESS_BLOCK_S * sr:
        x = np.tile(x, math.ceil(1.0 * sr / len(x)))  # >= 1 s: several blocks average the loop's phase
    return float(F.loudness(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None], sr))


# What measure() returns for every clip: manifest columns of every data set.
MEASURES = (
    "duration_ms",
    "lead_ms",
    "trail_ms",
    "speech_ms",
    "rms_dbfs",
    "peak_dbfs",
    "loudness_lufs",
    "clipped_fraction",
    "silent",
)


def measure(
    x: np.ndarray, sr: int, threshold_db: float = -35.0, frame_ms: float = 10.0, clip_level: float = 0.999
) -> dict:
    """Stats of a mono clip for data reports and monitoring; plain Python floats and bools.

    durations in ms (lead + speech + trail = duration; a silent clip is all lead), rms_dbfs and
    peak_dbfs (-inf for all zeros), loudness_lufs (NaN below 400 ms, where BS.1770 has no block, or
    when silent), clipped_fraction (share of samples with |x| >= clip_level), silent.
    """
    x = np.asarray(x, dtype=np.float32)
    n, ms = len(x), 1000.0 / sr
    bounds = speech_bounds(x, sr, threshold_db, frame_ms)
    start, end = bounds if bounds else (n, n)
    with np.errstate(divide="ignore"):
        rms = 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64)))) if n and x.any() else -math.inf
        peak = 20 * math.log10(float(np.abs(x).max())) if n and x.any() else -math.inf
    long_enough = bounds is not None and n >= LOUDNESS_BLOCK_S * sr
    return {
        "duration_ms": n * ms,
        "lead_ms": start * ms,
        "trail_ms": (n - end) * ms,
        "speech_ms": (end - start) * ms,
        "rms_dbfs": rms,
        "peak_dbfs": peak,
        "loudness_lufs": _loudness(x, sr) if long_enough else math.nan,
        "clipped_fraction": float(np.mean(np.abs(x) >= clip_level)) if n else 0.0,
        "silent": bounds is None,
    }


def _noise_reference(x: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    """The clip's quietest tenth of 10 ms frames, looped to `seconds`.

    vad learns the noise spectrum from its first boot_time of audio, but our clips often start on
    the word (FSDD) or have < 350 ms of lead (synthesized data), so it would learn the word as
    noise. Digital zeros are skipped: a zero noise estimate makes any hiss trigger.
    """
    hop = max(1, round(0.01 * sr))
    frames = x[: len(x) // hop * hop].reshape(-1, hop) if len(x) >= hop else x[None]
    power = np.mean(np.square(frames, dtype=np.float64), axis=1)
    frames, power = frames[power > 1e-12], power[power > 1e-12]
    quiet = frames[np.argsort(power)[: max(1, len(frames) // 10)]].reshape(-1)
    return np.tile(quiet, math.ceil(seconds * sr / len(quiet)))[: round(seconds * sr)]


def _vad_lead(x: np.ndarray, sr: int) -> int | None:
    """Samples before vad's trigger point, or None when it never triggers inside the clip."""
    import torch
    import torchaudio.functional as F

    pre = _noise_reference(x, sr, _VAD_BOOT_S + 0.05)
    post = _noise_reference(x, sr, 0.2)  # lets a word at the very end still build up the trigger
    padded = np.concatenate([pre, x, post]).astype(np.float32)
    kept = F.vad(torch.from_numpy(padded), sr, **_VAD).shape[-1]
    lead = len(padded) - kept - len(pre)
    return None if kept == 0 or lead >= len(x) else max(0, lead)


def trim(x: np.ndarray, sr: int, cfg: TrimConfig) -> np.ndarray:
    """Cut leading/trailing silence, keeping cfg.pad_ms on each side. A clip with no speech found
    (silent, or vad never triggers) is returned unchanged rather than emptied."""
    bounds = speech_bounds(x, sr, cfg.threshold_db, cfg.frame_ms)
    if cfg.method == "none" or bounds is None:
        return x
    if cfg.method == "energy":
        start, end = bounds
    elif cfg.method == "vad":
        lead, trail = _vad_lead(x, sr), _vad_lead(np.ascontiguousarray(x[::-1]), sr)
        if lead is None or trail is None or lead >= len(x) - trail:
            return x
        start, end = lead, len(x) - trail
    else:
        raise ValueError(f"unknown trim method {cfg.method!r}")
    pad = round(cfg.pad_ms * sr / 1000)
    return x[max(0, start - pad) : min(len(x), end + pad)]


def normalize(x: np.ndarray, sr: int, cfg: NormalizeConfig) -> np.ndarray:
    """Scale to cfg.target_db (dBFS peak or RMS, or LUFS), amplifying by at most cfg.max_gain_db.

    Silent clips (no 10 ms frame above -60 dBFS) and clips too quiet to measure are returned
    unchanged; the result is clipped to [-1, 1], so a loud target on a peaky clip can land low.
    """
    if cfg.method == "none" or speech_bounds(x, sr) is None:
        return x
    if cfg.method == "peak":
        level = 20 * math.log10(float(np.abs(x).max()))
    elif cfg.method == "rms":
        level = 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64))))
    elif cfg.method == "loudness":
        level = _loudness(x, sr)
    else:
        raise ValueError(f"unknown normalize method {cfg.method!r}")
    if not math.isfinite(level):
        return x
    gain_db = min(cfg.target_db - level, cfg.max_gain_db)
    return np.clip(x * np.float32(10 ** (gain_db / 20)), -1.0, 1.0).astype(np.float32)


def apply(samples: np.ndarray, sr: int, cfg: PreprocessConfig) -> np.ndarray:
    """Downmix ((channels, frames) or (frames,)), resample, trim, normalize, then fix the length to
    round(clip_seconds * sample_rate) with the audio placed per cfg.pad; float32 1-D."""
    x = to_mono(check_samples(np.asarray(samples, dtype=np.float32), "samples"))
    x = resample(x, sr, cfg.sample_rate)
    x = normalize(trim(x, cfg.sample_rate, cfg.trim), cfg.sample_rate, cfg.normalize)
    n = round(cfg.clip_seconds * cfg.sample_rate)
    return np.ascontiguousarray(fix_length(x, n, mode=cfg.pad), dtype=np.float32)
